// A deterministic local text embedding (issue 14; ADR 014): hashed word, word-pair, character
// n-gram and concept features in EMBED_DIMS dimensions, L2-normalised, the same Float32Array on
// every platform for the same text. It needs no model: every node makes the same vectors and can
// make them again at any time (EMBED_VERSION names the algorithm; a vector stored under another
// version is stale and is recomputed).
//
// The algorithm, exactly (so that it can be written again elsewhere):
//
//  1. Text. Keep the first EMBED_PARAMS.inputChars UTF-16 code units (a high surrogate left alone
//     at the cut is dropped), normalise to NFKC, lower-case with the locale-independent Unicode
//     default mapping (String.prototype.toLowerCase), and cut to inputChars again (NFKC may
//     lengthen). Delete a possessive "'s" (apostrophe U+0027, U+2019 or U+02BC, then "s", not
//     followed by a letter, mark or digit) and then any such apostrophe between two letters
//     ("don't" → "dont").
//  2. Words: the maximal runs of letters and marks (\p{L}\p{M}) and, separately, of digits
//     (\p{N}), so "pi4" is "pi", "4". At most EMBED_PARAMS.inputWords words are read.
//  3. A word in STOP_WORDS (English function words) is a stop word; any other is a content word,
//     with its stem from stem() (light English suffix stripping for words of 4+ ASCII letters; any
//     other word is its own stem).
//  4. Features, each a string key with a value, collected in a map in the order first produced:
//     walking the words in order,
//       "s" + word            for a stop word;
//       "w" + stem            for a content word;
//       "b" + s1 + " " + s2   for a content word whose previous content word (stop words skipped
//                             over) had stem s1;
//       "k" + id              for each concept group (CONCEPT_GROUPS, base-36 index; general
//                             English synonyms, matched by stem) the content word's stem is in;
//     each of these valued weight × sqrt(occurrences) (sublinear tf) with weight WEIGHTS.stop,
//     .word, .bigram, .concept. Then, for each distinct content word made of letters, in order of
//     first occurrence: the character n-grams of "<" + word + ">" (the word as written, unstemmed)
//     for n = 3, 4, 5, left to right, keyed "c" + gram, each adding WEIGHTS.char ·
//     sqrt(occurrences of the word) / sqrt(m) to its key's value (m: that word's number of grams;
//     a gram already in the map keeps its place).
//  5. Each key is hashed by hash32 (FNV-1a over its UTF-16 code units with Math.imul, then
//     murmur3's fmix32). Its dimension is hash & (EMBED_DIMS − 1); its sign + when bit 31 is 0, −
//     when it is 1. In map order, each signed value is added in float64 to its dimension.
//  6. L2-normalise (the square root of the sum of squares taken in dimension order; each value
//     times 1 / that root) and round to float32. A text with no word gives the zero vector.
//
// Only +, ×, / and Math.sqrt (correctly rounded under IEEE 754) touch the floats, in a fixed
// order, so every IEEE-754 platform computes the same bits; there is no Math.log, whose last bit
// may differ between engines. Step 1 depends on the engine's Unicode version only for characters
// it does not know (NFKC of assigned characters is stable by Unicode's policy).
//
// Cost is linear in the text and bounded by inputChars and inputWords: about 15 µs for a short
// sentence, 40 µs for 500 characters, a few ms for the largest input (bench/self.ts measures it).
import { fmix32 } from "../util/bytes.ts";

/** Dimensions of the vector (a power of two). */
export const EMBED_DIMS = 512;

/** Changes whenever the algorithm, its parameters or its tables change: stored vectors under another version are recomputed. */
export const EMBED_VERSION = "pk-embed-1/512";

/** The input read (part of the algorithm: changing them changes EMBED_VERSION). */
export const EMBED_PARAMS = {
  /** UTF-16 code units of text read; the rest is ignored (a memory's text is at most 8 KiB). */
  inputChars: 16_384,
  /** Words read after tokenising. */
  inputWords: 4_096,
} as const;

/** Feature weights (tuned on the tune split of test/testdata/self-retrieval.json, ADR 014). */
export const WEIGHTS = Object.freeze({
  word: 1,
  stop: 0.1,
  bigram: 0.5,
  char: 1,
  concept: 3,
});

const FAMILY_WORD = "w";
const FAMILY_STOP = "s";
const FAMILY_BIGRAM = "b";
const FAMILY_CHAR = "c";
const FAMILY_CONCEPT = "k";

/**
 * English function words: weighted WEIGHTS.stop as unigrams, skipped over by bigrams, given no
 * character grams, and left out of tokens() (so BM25 does not score them).
 */
export const STOP_WORDS: ReadonlySet<string> = new Set([
  "a", "about", "above", "after", "again", "against", "all", "also", "am", "an", "and", "any", "are", "as", "at",
  "be", "because", "been", "before", "being", "below", "between", "both", "but", "by",
  "can", "could", "did", "do", "does", "doing", "done", "down", "during",
  "each", "either", "else", "ever", "every", "few", "for", "from", "further",
  "had", "has", "have", "having", "he", "her", "here", "hers", "herself", "him", "himself", "his", "how",
  "i", "if", "in", "into", "is", "it", "its", "itself", "just",
  "let", "may", "me", "might", "mine", "more", "most", "much", "must", "my", "myself",
  "no", "nor", "not", "now", "of", "off", "on", "once", "only", "or", "other", "ought", "our", "ours", "ourselves", "out", "over", "own",
  "same", "shall", "she", "should", "so", "some", "such",
  "than", "that", "the", "their", "theirs", "them", "themselves", "then", "there", "these", "they", "this", "those", "through", "to", "too",
  "under", "until", "up", "us", "very", "was", "we", "were", "what", "when", "where", "which", "while", "who", "whom", "whose", "why", "will", "with", "would",
  "you", "your", "yours", "yourself", "yourselves",
  "im", "ive", "youre", "dont", "doesnt", "didnt", "isnt", "arent", "wasnt", "werent", "cant", "couldnt", "wont", "wouldnt", "shouldnt",
  "thats", "theres", "whats", "wheres", "hows",
  "yes", "yeah", "ok", "okay", "please", "thanks", "hey", "hi", "tell", "remind", "know", "remember",
]);

/**
 * Concept groups: everyday English synonyms, near-synonyms and close relatives, one group per
 * string, matched by stem. A content word in a group also adds the group's feature, so "kid" and
 * "daughter", "sofa" and "couch" share a dimension: the only thing here that knows meaning, and
 * what makes the vector better than BM25 at paraphrase. It was written by the author of the
 * retrieval set after the set's tune split, so that split overstates what it does; the held-out
 * split, written after the table was frozen, measures it (ADR 014). Changing it changes
 * EMBED_VERSION.
 */
const CONCEPT_GROUPS: readonly string[] = [
  "child children kid kids son daughter boy girl toddler baby teen teenager youngster offspring",
  "parent parents mother mum mom mummy mommy father dad daddy",
  "mother mum mom mummy mommy",
  "father dad daddy papa",
  "grandmother grandma granny nan nana grandfather grandpa granddad grandad grandparent grandparents",
  "sibling siblings brother sister",
  "spouse partner wife husband fiance fiancee",
  "aunt uncle niece nephew cousin godson goddaughter godchild relative relatives",
  "friend friends mate pal buddy",
  "neighbour neighbor neighbours neighbors",
  "boss manager supervisor",
  "colleague coworker teammate",
  "babysitter childminder nanny sitter",
  "cleaner housekeeper",
  "doctor gp physician medic surgery clinic",
  "dentist dental teeth tooth orthodontist",
  "vet veterinary veterinarian",
  "plumber pipes leak",
  "electrician wiring",
  "landlord landlady owner letting",
  "morning mornings breakfast dawn",
  "evening evenings night nights tonight",
  "weekend saturday sunday",
  "midweek wednesday",
  "weekly week every fortnight fortnightly biweekly",
  "monthly month",
  "yearly annual annually year",
  "today tomorrow yesterday",
  "birthday anniversary",
  "christmas xmas festive holidays holiday",
  "summer july august",
  "winter december january february",
  "autumn fall september october november",
  "spring march april may",
  "early late",
  "schedule timetable rota calendar diary",
  "appointment booking booked reservation",
  "deadline due overdue",
  "school primary secondary academy college university uni",
  "teacher tutor instructor coach",
  "lesson lessons class classes course tuition practice training session sessions",
  "exam test grade assessment",
  "homework assignment",
  "graduate graduated degree studied study studies",
  "learn learning studying practise practice",
  "music musical piano violin guitar instrument drums cello flute keyboard",
  "sing singing choir",
  "football soccer kickabout",
  "swim swimming pool",
  "climb climbing boulder bouldering",
  "run running jog jogging marathon race",
  "bike bicycle cycle cycling",
  "paint painting watercolour watercolours drawing art",
  "knit knitting yarn wool crochet sewing",
  "photo photos photograph photography picture pictures camera",
  "book books novel novels reading read",
  "film films movie movies cinema watch",
  "game games gaming play",
  "garden gardening allotment plot plants greenhouse veg vegetables",
  "chess board",
  "medicine medication pill pills tablet tablets prescription drug dose",
  "ill illness sick unwell",
  "allergy allergic allergies intolerant intolerance",
  "vaccine vaccination jab injection booster shot immunisation",
  "headache headaches migraine migraines",
  "pain ache sore hurts hurt",
  "back spine",
  "knee knees joint",
  "eye eyes vision sight optician glasses spectacles lenses contacts",
  "blood pressure bp",
  "cholesterol fats lipids statin",
  "exercise exercises workout stretches stretching physio physiotherapy",
  "operation surgery replaced replacement procedure",
  "fracture fractured broke broken break",
  "inhaler puffer asthma",
  "emergency urgent ambulance",
  "sleep asleep bed bedtime nap",
  "caffeine coffee espresso latte",
  "dairy milk cheese lactose yoghurt",
  "sugar sweets candy sweet chocolate",
  "alcohol drink drinking wine beer booze sober dry",
  "donate donation give",
  "walk walking steps stroll",
  "house home flat apartment place",
  "room bedroom lounge sitting living kitchen bathroom washroom toilet hallway hall landing loft attic garage shed cellar basement",
  "sofa couch settee",
  "carpet rug",
  "tap faucet sink",
  "water mains stopcock valve",
  "heating boiler radiator radiators heater thermostat",
  "electric electrical electricity power energy fuse fuses consumer circuit",
  "light lights lamp lamps bulb bulbs lighting",
  "window windows glass",
  "door doors lock latch key keys",
  "alarm alarms burglar security",
  "smoke fire detector",
  "bin bins rubbish trash garbage waste recycling refuse",
  "wash washing laundry washer",
  "dryer tumble drying",
  "dishwasher dishes",
  "clean cleaning cleaner hoover vacuum shampoo shampooer",
  "repair fix fixed mend broken",
  "paint colour color walls decorate decorating",
  "insulation insulate draught",
  "decorations ornaments tinsel",
  "delivery delivered arrive arrives arriving deliver",
  "food meal meals dinner lunch supper eat eating cook cooking dish dishes recipe",
  "takeaway takeout delivery order",
  "chinese thai indian italian",
  "curry spicy",
  "pizza margherita",
  "pasta lasagne spaghetti",
  "bread loaf sourdough bake baking",
  "cake dessert pudding",
  "meat pork beef chicken lamb bacon ham sausage",
  "vegetarian vegan veggie",
  "vegetable vegetables veg greens broccoli carrots",
  "herb herbs coriander cilantro basil parsley",
  "fruit banana apple berries raspberry",
  "grocery groceries shopping supermarket shop food",
  "coffee tea drink",
  "freezer frozen freeze fridge",
  "pet pets animal animals",
  "cat cats kitten moggy tabby feline",
  "dog dogs puppy pup collie hound canine",
  "hamster rodent guinea",
  "fish aquarium tank",
  "flea fleas worming parasite tick",
  "walk walks",
  "car vehicle motor auto",
  "tyre tyres tire tires wheel wheels",
  "mot service servicing inspection roadworthiness",
  "insurance insured policy cover",
  "park parking bay space",
  "train rail railway station commute commuting platform",
  "drive driving road",
  "breakdown recovery",
  "licence license",
  "fly flight flights plane airport airline",
  "holiday holidays trip vacation break getaway travel travelling",
  "hotel resort stay accommodation",
  "passport visa esta",
  "camping camp tent campsite",
  "ferry boat crossing",
  "luggage suitcase bags",
  "work job office workplace employer career company",
  "meeting meetings call calls standup sync",
  "review appraisal evaluation performance",
  "promotion promoted raise",
  "leave holiday vacation days",
  "salary pay wage wages payday paid income",
  "pension retirement",
  "expenses expense claim costs",
  "money cash pounds cost costs price fee fees charge charges charged pay paid",
  "rent rental mortgage loan debt borrow owe owed",
  "bank account savings saving isa deposit",
  "tax taxes return hmrc",
  "subscription subscriptions streaming netflix spotify",
  "bill bills invoice",
  "computer computers pc desktop laptop machine machines server servers node nodes host",
  "pi raspberry",
  "network networking internet broadband wifi online connection connected",
  "router gateway modem",
  "password passwords login logins credential credentials key",
  "backup backups back copy offsite",
  "disk disks drive drives ssd hdd storage nas",
  "gpu graphics",
  "vm vms virtual hypervisor proxmox",
  "ad ads advert adverts blocker block",
  "printer print printing",
  "tablet tablets ipad ipads screen",
  "camera cameras cctv footage recording recordings video",
  "temperature temperatures hot heat warm overheat overheats cold degrees",
  "fan fans cooling noisy noise rattle rattles",
  "update updates upgrade patch patching",
  "certificate cert https tls ssl",
  "vpn tunnel remote remotely",
  "dashboard monitoring graphs metrics grafana",
  "model trained training",
  "address ip",
  "port ports",
  "phone mobile cell smartphone telephone ring call text message",
  "email mail inbox letter post",
  "weather rain raining rainy sunny forecast snow storm wind windy",
  "clothes clothing shirt jumper sweater jacket coat trousers jeans shoes trainers boots dress",
  "shop store market mall shops",
  "buy bought purchase purchased order ordered",
  "sell sold selling",
  "gift present presents",
  "party celebration celebrate",
  "wedding marriage married marry",
  "funeral memorial",
  "church chapel mosque temple synagogue",
  "hospital ward clinic",
  "pharmacy chemist pharmacist",
  "police station officer",
  "library librarian",
  "bus coach",
  "taxi cab uber",
  "bicycle bike",
  "tool tools drill hammer screwdriver spanner wrench",
  "furniture table chair chairs desk shelf shelves wardrobe drawer drawers cupboard cabinet",
  "bed mattress pillow duvet blanket sheets",
  "towel towels",
  "happy glad pleased cheerful",
  "sad unhappy upset down",
  "angry annoyed cross furious",
  "scared afraid frightened fear fears nervous anxious terrified",
  "tired exhausted sleepy",
  "big large huge",
  "small little tiny",
  "fast quick quickly",
  "slow slowly",
  "cheap inexpensive affordable",
  "expensive pricey costly dear",
  "start begin begins starts starting",
  "end finish finishes ends ending stop stops",
  "buy purchase",
  "fix repair mend sort",
  "broken faulty dead failing failed failure",
  "quiet silent",
  "loud noisy",
  "red crimson scarlet",
  "blue navy",
  "green olive",
  "colour color shade",
  "lawn grass mower",
  "tree trees hedge hedges bush",
  "flower flowers orchid orchids rose roses tulips",
  "bird birds robin sparrow",
  "insect insects bug bugs wasp bee bees",
  "storage store stored keep kept",
  "lost missing misplaced",
  "find found locate",
  "remember recall forget forgot forgotten",
  "document documents paperwork papers forms form",
  "contract agreement deal",
  "cancel cancelled cancellation quit",
  "renew renewal renews renewed expire expires expiry expired",
  "number code pin",
  "name called named",
  "age old years",
  "address street road lane avenue",
  "town city village",
  "country abroad overseas foreign",
];

/** stem → the concept ids (indexes of CONCEPT_GROUPS) it belongs to. */
let concepts: ReadonlyMap<string, readonly number[]> | undefined;

function conceptsOf(s: string): readonly number[] | undefined {
  concepts ??= buildConcepts(CONCEPT_GROUPS.map((g) => g.split(" ")));
  return concepts.get(s);
}

function buildConcepts(groups: readonly (readonly string[])[]): Map<string, number[]> {
  const map = new Map<string, number[]>();
  groups.forEach((group, id) => {
    for (const word of group) {
      const s = stem(word);
      const ids = map.get(s);
      if (ids === undefined) map.set(s, [id]);
      else if (!ids.includes(id)) ids.push(id);
    }
  });
  return map;
}

/** 32-bit hash of a string's UTF-16 code units: FNV-1a, then murmur3's fmix32. */
export function hash32(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return fmix32(h);
}

export { fmix32 };

const ASCII_WORD = /^[a-z]+$/;
const VOWEL = /[aeiouy]/;
const DOUBLED = /([bdfgkmnprtvz])\1$/;

/**
 * A light English stemmer (not Porter's): strips plurals (ies → y, sses → ss, es after s/x/z/ch/sh,
 * s unless ss/us/is), then -ing / -ed (if at least 3 letters with a vowel remain; a doubled final
 * consonant undoubled: running → run; ied → y) or -ly (if 4 remain), then a final e (drive, driving
 * → driv). Words that are not 4+ ASCII letters are returned as they are.
 */
export function stem(word: string): string {
  if (word.length <= 3 || !ASCII_WORD.test(word)) return word;
  let w = word;
  if (w.endsWith("ies") && w.length > 4) w = `${w.slice(0, -3)}y`;
  else if (w.endsWith("sses")) w = w.slice(0, -2);
  else if (w.endsWith("es") && /(s|x|z|ch|sh)es$/.test(w)) w = w.slice(0, -2);
  else if (w.endsWith("s") && !/(ss|us|is)$/.test(w)) w = w.slice(0, -1);
  if (w.endsWith("ing") && w.length - 3 >= 3 && VOWEL.test(w.slice(0, -3))) {
    w = undouble(w.slice(0, -3));
  } else if (w.endsWith("ied") && w.length > 4) {
    w = `${w.slice(0, -3)}y`;
  } else if (w.endsWith("ed") && w.length - 2 >= 3 && VOWEL.test(w.slice(0, -2))) {
    w = undouble(w.slice(0, -2));
  } else if (w.endsWith("ly") && w.length - 2 >= 5) {
    w = w.slice(0, -2);
  }
  if (w.endsWith("e") && w.length > 3) w = w.slice(0, -1);
  return w;
}

function undouble(w: string): string {
  return DOUBLED.test(w) ? w.slice(0, -1) : w;
}

const POSSESSIVE = /['\u2019\u02bc]s(?![\p{L}\p{M}\p{N}])/gu;
const INNER_APOSTROPHE = /(?<=[\p{L}\p{M}])['\u2019\u02bc](?=[\p{L}\p{M}])/gu;
const WORD = /[\p{L}\p{M}]+|\p{N}+/gu;
const LETTER = /^[\p{L}\p{M}]/u;

function cut(text: string, units: number): string {
  if (text.length <= units) return text;
  const code = text.charCodeAt(units - 1);
  return text.slice(0, code >= 0xd800 && code <= 0xdbff ? units - 1 : units);
}

/** Steps 1–2: the words of a text, normalised, unstemmed, at most inputWords of them. */
export function words(text: string): string[] {
  if (typeof text !== "string" || text.length === 0) return [];
  const prepared = cut(cut(text, EMBED_PARAMS.inputChars).normalize("NFKC").toLowerCase(), EMBED_PARAMS.inputChars)
    .replace(POSSESSIVE, "")
    .replace(INNER_APOSTROPHE, "");
  const out: string[] = [];
  for (const match of prepared.matchAll(WORD)) {
    out.push(match[0]);
    if (out.length >= EMBED_PARAMS.inputWords) break;
  }
  return out;
}

/** BM25's terms: the stems of a text's content words (stop words left out), in text order. */
export function tokens(text: string): string[] {
  const out: string[] = [];
  for (const w of words(text)) if (!STOP_WORDS.has(w)) out.push(stem(w));
  return out;
}

/** The features of a text, in production order, with their summed weights (steps 3–4). */
function features(text: string): Map<string, number> {
  const counts = new Map<string, number>();
  const bump = (key: string, by: number): void => {
    counts.set(key, (counts.get(key) ?? 0) + by);
  };
  const all = words(text);
  const contentCounts = new Map<string, number>();
  let previous: string | undefined;
  for (const w of all) {
    if (STOP_WORDS.has(w)) {
      bump(FAMILY_STOP + w, 1);
      continue;
    }
    const s = stem(w);
    bump(FAMILY_WORD + s, 1);
    if (previous !== undefined) bump(`${FAMILY_BIGRAM}${previous} ${s}`, 1);
    previous = s;
    contentCounts.set(w, (contentCounts.get(w) ?? 0) + 1);
    const ids = conceptsOf(s);
    if (ids !== undefined) for (const id of ids) bump(FAMILY_CONCEPT + id.toString(36), 1);
  }
  // Values: sublinear tf for words, bigrams and concepts.
  const values = new Map<string, number>();
  for (const [key, count] of counts) {
    const family = key.charAt(0);
    const weight = family === FAMILY_WORD ? WEIGHTS.word
      : family === FAMILY_STOP ? WEIGHTS.stop
      : family === FAMILY_BIGRAM ? WEIGHTS.bigram : WEIGHTS.concept;
    values.set(key, weight * Math.sqrt(count));
  }
  // Character grams of each distinct content word of letters, shared grams summed.
  for (const [w, count] of contentCounts) {
    if (!LETTER.test(w)) continue;
    const padded = `<${w}>`;
    let grams = 0;
    for (let n = 3; n <= 5; n++) grams += Math.max(0, padded.length - n + 1);
    if (grams === 0) continue;
    const each = (WEIGHTS.char * Math.sqrt(count)) / Math.sqrt(grams);
    for (let n = 3; n <= 5; n++) {
      for (let i = 0; i + n <= padded.length; i++) {
        const key = FAMILY_CHAR + padded.slice(i, i + n);
        values.set(key, (values.get(key) ?? 0) + each);
      }
    }
  }
  return values;
}

/** The embedding of a text: EMBED_DIMS float32 values, unit length (zero for a text without words). */
export function embed(text: string): Float32Array {
  const acc = new Float64Array(EMBED_DIMS);
  const mask = EMBED_DIMS - 1;
  for (const [key, value] of features(text)) {
    const h = hash32(key);
    acc[h & mask] = (acc[h & mask] as number) + (h >>> 31 === 0 ? value : -value);
  }
  let norm = 0;
  for (let i = 0; i < EMBED_DIMS; i++) norm += (acc[i] as number) * (acc[i] as number);
  const out = new Float32Array(EMBED_DIMS);
  if (norm === 0) return out;
  const scale = 1 / Math.sqrt(norm);
  for (let i = 0; i < EMBED_DIMS; i++) out[i] = (acc[i] as number) * scale;
  return out;
}

/** Inner product of two vectors of the same length (the cosine of two unit vectors). */
export function dot(a: Float32Array, b: Float32Array): number {
  return dotAt(a, 0, b, Math.min(a.length, b.length));
}

/**
 * Inner product of `q` (its first `n` values) with the `n` values of `rows` from `offset`: four
 * running sums, added at the end (the one summation order used everywhere, so exact search and a
 * reference agree to the bit).
 */
export function dotAt(rows: Float32Array, offset: number, q: Float32Array, n: number): number {
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  let i = 0;
  for (; i + 3 < n; i += 4) {
    const o = offset + i;
    s0 += (rows[o] as number) * (q[i] as number);
    s1 += (rows[o + 1] as number) * (q[i + 1] as number);
    s2 += (rows[o + 2] as number) * (q[i + 2] as number);
    s3 += (rows[o + 3] as number) * (q[i + 3] as number);
  }
  for (; i < n; i++) s0 += (rows[offset + i] as number) * (q[i] as number);
  return s0 + s1 + s2 + s3;
}
