// Path rules of the shared folder (sfs, docs/protocols/sfs.md). A shared path is relative to
// /shared/ and canonical: segments joined by "/", no leading or trailing slash, no empty, "." or
// ".." segment, no NUL or other control character, no backslash, Unicode in NFC, at most
// SFS_PATH.bytesMax UTF-8 bytes in all, SFS_PATH.segmentBytesMax per segment and SFS_PATH.depthMax
// segments. Segments starting with ".sfs-" are reserved (the temp folder lives there).
//
// A path from a peer must already be canonical; anything else is dropped and counted, so no peer
// can name a file outside /shared/ or the temp folder. The shell's input goes through
// normalizeSharedPath, which also accepts "/shared/..." and folds "." and repeated slashes.
import { LIMITS } from "../util/limits.ts";

export const SFS_PATH = {
  /** bytesMax, segmentBytesMax, depthMax (LIMITS.sfsPath). */
  ...LIMITS.sfsPath,
  /** Reserved segment prefix: the adapter's temp folder is `.sfs-tmp`. */
  reservedPrefix: ".sfs-",
} as const;

const utf8 = new TextEncoder();
const FORBIDDEN = /[\u0000-\u001f\u007f\\]/;

export type PathResult = { readonly ok: true; readonly path: string } | { readonly ok: false; readonly error: string };

export function utf8Length(text: string): number {
  return utf8.encode(text).length;
}

/**
 * Turns what a user typed into a canonical shared path. Accepts a path relative to /shared/ or an
 * absolute one inside /shared/; refuses anything outside it, "..", control characters and paths
 * beyond the bounds. "/shared" itself (the root) is refused: it is no file.
 */
export function normalizeSharedPath(input: string): PathResult {
  let rest = input;
  if (rest.startsWith("/")) {
    if (rest === "/shared" || rest === "/shared/") return { ok: false, error: "the /shared/ folder itself is no file" };
    if (!rest.startsWith("/shared/")) return { ok: false, error: "outside /shared/" };
    rest = rest.slice("/shared/".length);
  }
  if (FORBIDDEN.test(rest)) return { ok: false, error: "control character or backslash in path" };
  const segments: string[] = [];
  for (const raw of rest.split("/")) {
    if (raw === "" || raw === ".") continue;
    if (raw === "..") return { ok: false, error: "`..` is not allowed" };
    const segment = raw.normalize("NFC");
    if (segment.startsWith(SFS_PATH.reservedPrefix)) return { ok: false, error: `names starting with ${SFS_PATH.reservedPrefix} are reserved` };
    if (utf8Length(segment) > SFS_PATH.segmentBytesMax) return { ok: false, error: `a name is longer than ${SFS_PATH.segmentBytesMax} bytes` };
    segments.push(segment);
  }
  if (segments.length === 0) return { ok: false, error: "empty path" };
  if (segments.length > SFS_PATH.depthMax) return { ok: false, error: `deeper than ${SFS_PATH.depthMax} levels` };
  const path = segments.join("/");
  if (utf8Length(path) > SFS_PATH.bytesMax) return { ok: false, error: `longer than ${SFS_PATH.bytesMax} bytes` };
  return { ok: true, path };
}

/** True when a path (from a peer, the store or the disk) is already in canonical form. */
export function isCanonicalPath(path: string): boolean {
  if (path.length === 0 || path.startsWith("/")) return false;
  const result = normalizeSharedPath(path);
  return result.ok && result.path === path;
}

/** The parent directories of a canonical path, outermost first ("a/b/c" → ["a", "a/b"]). */
export function ancestorsOf(path: string): string[] {
  const out: string[] = [];
  let at = path.indexOf("/");
  while (at >= 0) {
    out.push(path.slice(0, at));
    at = path.indexOf("/", at + 1);
  }
  return out;
}

export const CONFLICT_MARK = ".conflict-";

/**
 * The name a losing version is kept under: `dir/stem.conflict-<origin>-<counter>.ext` (the
 * extension is kept last so the file still opens with its program). Deterministic: every node
 * derives the same name from the same version. The stem is shortened when the name would exceed
 * the bounds; undefined when even that cannot fit.
 */
export function conflictPath(path: string, origin: string, counter: number): string | undefined {
  const slash = path.lastIndexOf("/");
  const dir = slash < 0 ? "" : path.slice(0, slash + 1);
  const base = slash < 0 ? path : path.slice(slash + 1);
  const dot = base.lastIndexOf(".");
  const hasExt = dot > 0 && base.length - dot <= LIMITS.sfsPath.conflictExtensionCharsMax;
  const ext = hasExt ? base.slice(dot) : "";
  const mark = `${CONFLICT_MARK}${origin}-${counter}`;
  const chars = Array.from(hasExt ? base.slice(0, dot) : base);
  for (;;) {
    const name = `${chars.join("")}${mark}${ext}`;
    const full = dir + name;
    if (utf8Length(name) <= SFS_PATH.segmentBytesMax && utf8Length(full) <= SFS_PATH.bytesMax) {
      return chars.length > 0 && isCanonicalPath(full) ? full : undefined;
    }
    if (chars.length <= 1) return undefined;
    chars.pop();
  }
}
