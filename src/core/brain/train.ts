// train: mini-batch training of the Brain's Transformer (transformer.ts) with AdamW or SGD
// (optim.ts), and its evaluation. Used by the shell (`dtr train`), by federated learning
// (federated.ts: each client's local epochs) and by the MoE and GA experiments.
//
// Training is a Trainer: `runSteps(n)` takes at most n optimizer steps and returns, so the node can
// run a long training in slices on its event loop; `trainModel` runs one to the end. One step is one
// mini-batch: every epoch visits the train set in an order shuffled by the injected Rng (one
// Fisher–Yates shuffle of the indices per epoch), the last batch of an epoch holding the remainder.
// The learning rate follows `schedule`: "constant", or "cosine" — a linear warm-up over the first
// `warmupSteps` steps, then a half cosine from lr down to `minLrFraction`·lr at the last step
// (Loshchilov & Hutter, SGDR, 2017). Parameters are updated in place.
//
// Determinism: nothing here reads time or ambient randomness, float32 parameters with float64
// sums in fixed order; the same (params, data, options, rng seed) give bit-identical parameters,
// however the steps are sliced into runSteps calls.
//
// Defaults (TRAIN_DEFAULTS), chosen by measurement on the seed model (715 parameters) with
// generateSensorData n = 4000, 25 % held out, seeds 1–3 (test/core/brain/train.test.ts):
// see the constant's comment for the numbers.
import type { Rng } from "../util/rng.ts";
import { LIMITS } from "../util/limits.ts";
import { AdamW, SGD, clipGradNorm } from "./optim.ts";
import {
  Workspace, inputError, forward, lossAndGrad, paramCount, validateConfig, weightDecayMask,
  type Example, type ModelConfig,
} from "./transformer.ts";

export type OptimizerName = "adamw" | "sgd";
export type LrSchedule = "constant" | "cosine";

/** Epochs one training may run, at most (LIMITS.train). */
export const TRAIN_EPOCHS_MAX = LIMITS.train.epochsMax;
/** Examples one training or evaluation may use, at most (LIMITS.train). */
export const TRAIN_EXAMPLES_MAX = LIMITS.train.examplesMax;

/**
 * Defaults for the seed model on the sensor data. Measured (n = 4000, 25 % held out, one core of
 * the 2-core dev VM): held-out accuracy 0.908 / 0.891 / 0.905 for seeds 1 / 2 / 3 (0.89–0.91 for
 * seeds 4–8) against 0.621 / 0.647 / 0.633 for the best single-feature threshold rule and
 * 0.92–0.93 for the generator's Bayes rule; ≈ 0.6 s per training (3000 examples × 20 epochs,
 * ≈ 10 µs per example forward + backward). Alternatives measured on seeds 1–3: lr 0.02 → 0.87–0.90,
 * lr 0.03 → 0.88–0.89, a constant lr 0.02 → 0.80–0.88, SGD (momentum 0.9, lr 0.1) → 0.83–0.87,
 * batch 64 × 30 epochs → 0.90–0.91 at 1.5× the time, no gradient clipping → 0.88–0.92.
 */
export const TRAIN_DEFAULTS = Object.freeze({
  epochs: 20,
  batchSize: 32,
  lr: 0.01,
  weightDecay: 0.01,
  optimizer: "adamw" as OptimizerName,
  schedule: "cosine" as LrSchedule,
  warmupSteps: 20,
  minLrFraction: 0.05,
  clipNorm: 1,
  /** SGD only. */
  momentum: 0.9,
});

export interface TrainProgress {
  /** Epochs completed (the current epoch is `epoch` + 1 while one is under way). */
  readonly epoch: number;
  /** Optimizer steps taken. */
  readonly step: number;
  /** Optimizer steps of the whole training. */
  readonly steps: number;
  /** Mean mini-batch loss of the last completed epoch (of the epoch so far in runSteps results). */
  readonly loss: number;
  /** Held-out accuracy after the epoch that just completed, when there is a held-out set. */
  readonly heldOutAccuracy?: number;
}

export interface TrainOptions {
  readonly epochs?: number;
  readonly batchSize?: number;
  readonly lr?: number;
  /** AdamW: decoupled decay; SGD: L2 penalty. Matrices and embeddings only (weightDecayMask). */
  readonly weightDecay?: number;
  readonly optimizer?: OptimizerName;
  readonly schedule?: LrSchedule;
  /** Linear warm-up steps of the cosine schedule. */
  readonly warmupSteps?: number;
  /** Final learning rate of the cosine schedule as a fraction of lr. */
  readonly minLrFraction?: number;
  /** SGD momentum. */
  readonly momentum?: number;
  /** Global gradient-norm clip per step; Infinity or 0 to disable. */
  readonly clipNorm?: number;
  /** Shuffles the train set each epoch. */
  readonly rng: Rng;
  /** Evaluated after every epoch (for onProgress) and at the end (for the report). */
  readonly heldOut?: readonly Example[];
  /** Called after every completed epoch. */
  readonly onProgress?: (p: TrainProgress) => void;
  /** Checked before every step; true ends the training early (the report says `stopped`). */
  readonly shouldStop?: () => boolean;
}

export interface TrainReport {
  /** Epochs completed. */
  readonly epochs: number;
  /** Optimizer steps taken. */
  readonly steps: number;
  /** Mean cross-entropy of the final parameters over the whole train set. */
  readonly finalLoss: number;
  readonly trainAccuracy: number;
  /** Held-out accuracy of the final parameters; null without a held-out set. */
  readonly heldOutAccuracy: number | null;
  /** Mean mini-batch loss of each completed epoch, in order. */
  readonly lossCurve: readonly number[];
  /** True when shouldStop ended the training before its last step. */
  readonly stopped: boolean;
}

export interface StepsResult extends TrainProgress {
  /** Steps taken by this call. */
  readonly taken: number;
  /** No step remains (or the training was stopped). */
  readonly done: boolean;
}

export interface ClassCount {
  correct: number;
  total: number;
}

export interface Evaluation {
  readonly accuracy: number;
  /** Mean cross-entropy (natural log). */
  readonly loss: number;
  /** Per true class. */
  readonly perClass: readonly ClassCount[];
  /** confusion[true][predicted]: example counts. */
  readonly confusion: readonly (readonly number[])[];
}

/** Why `ex` is not a valid labelled example for the model, or null. Safe on untrusted input. */
export function exampleError(cfg: ModelConfig, ex: Example): string | null {
  if (typeof ex !== "object" || ex === null) return "example must be an object";
  if (!(ex.ids instanceof Int32Array)) return "example ids must be an Int32Array";
  if (!(ex.values instanceof Float32Array || ex.values instanceof Float64Array)) return "example values must be a Float32Array or Float64Array";
  const err = inputError(cfg, ex.ids, ex.values);
  if (err !== null) return err;
  for (let i = 0; i < ex.values.length; i++) if (!Number.isFinite(ex.values[i] as number)) return `example value ${i} is not finite`;
  if (!Number.isInteger(ex.label) || ex.label < 0 || ex.label >= cfg.nClasses) return `label ${String(ex.label)} outside [0, ${cfg.nClasses})`;
  return null;
}

function checkExamples(cfg: ModelConfig, examples: readonly Example[], what: string): void {
  if (examples.length > TRAIN_EXAMPLES_MAX) throw new RangeError(`${what}: ${examples.length} examples exceed TRAIN_EXAMPLES_MAX (${TRAIN_EXAMPLES_MAX})`);
  examples.forEach((ex, i) => {
    const err = exampleError(cfg, ex);
    if (err !== null) throw new RangeError(`${what}: example ${i}: ${err}`);
  });
}

function checkParams(cfg: ModelConfig, params: Float32Array): void {
  if (!(params instanceof Float32Array)) throw new RangeError("params must be a Float32Array");
  if (params.length !== paramCount(cfg)) throw new RangeError(`params has ${params.length} entries, the model needs ${paramCount(cfg)}`);
}

/** Index of the largest logit (the lowest index on ties; NaN logits never win). */
function argmax(logits: ArrayLike<number>): number {
  let best = 0;
  for (let c = 1; c < logits.length; c++) if ((logits[c] as number) > (logits[best] as number)) best = c;
  return best;
}

/** The model's class for `ex` (argmax of the logits). Pass an inference workspace in loops. */
export function predict(cfg: ModelConfig, params: Float32Array, ex: Pick<Example, "ids" | "values">, ws?: Workspace<Float32Array>): number {
  return argmax(forward(cfg, params, ex.ids, ex.values, ws));
}

/** Accuracy, mean cross-entropy, per-class counts and the confusion matrix of `params` on `examples`. */
export function evaluate(cfg: ModelConfig, params: Float32Array, examples: readonly Example[], ws?: Workspace<Float32Array>): Evaluation {
  validateConfig(cfg);
  checkParams(cfg, params);
  if (examples.length === 0) throw new RangeError("evaluate needs at least one example");
  checkExamples(cfg, examples, "evaluate");
  const w = ws ?? new Workspace(cfg, Float32Array);
  const C = cfg.nClasses;
  const confusion = Array.from({ length: C }, () => new Array<number>(C).fill(0));
  let correct = 0;
  let loss = 0;
  for (const ex of examples) {
    const logits = forward(cfg, params, ex.ids, ex.values, w);
    const p = argmax(logits);
    let max = -Infinity;
    for (let c = 0; c < C; c++) if ((logits[c] as number) > max) max = logits[c] as number;
    let sum = 0;
    for (let c = 0; c < C; c++) sum += Math.exp((logits[c] as number) - max);
    loss += max + Math.log(sum) - (logits[ex.label] as number);
    const row = confusion[ex.label] as number[];
    row[p] = (row[p] as number) + 1;
    if (p === ex.label) correct++;
  }
  const perClass = confusion.map((row, c) => ({ correct: row[c] as number, total: row.reduce((s, x) => s + x, 0) }));
  return { accuracy: correct / examples.length, loss: loss / examples.length, perClass, confusion };
}

interface ResolvedOptions {
  readonly epochs: number;
  readonly batchSize: number;
  readonly lr: number;
  readonly weightDecay: number;
  readonly optimizer: OptimizerName;
  readonly schedule: LrSchedule;
  readonly warmupSteps: number;
  readonly minLrFraction: number;
  readonly momentum: number;
  readonly clipNorm: number;
}

function resolve(opts: TrainOptions): ResolvedOptions {
  const r: ResolvedOptions = {
    epochs: opts.epochs ?? TRAIN_DEFAULTS.epochs,
    batchSize: opts.batchSize ?? TRAIN_DEFAULTS.batchSize,
    lr: opts.lr ?? TRAIN_DEFAULTS.lr,
    weightDecay: opts.weightDecay ?? TRAIN_DEFAULTS.weightDecay,
    optimizer: opts.optimizer ?? TRAIN_DEFAULTS.optimizer,
    schedule: opts.schedule ?? TRAIN_DEFAULTS.schedule,
    warmupSteps: opts.warmupSteps ?? TRAIN_DEFAULTS.warmupSteps,
    minLrFraction: opts.minLrFraction ?? TRAIN_DEFAULTS.minLrFraction,
    momentum: opts.momentum ?? TRAIN_DEFAULTS.momentum,
    clipNorm: opts.clipNorm ?? TRAIN_DEFAULTS.clipNorm,
  };
  if (!Number.isInteger(r.epochs) || r.epochs < 0 || r.epochs > TRAIN_EPOCHS_MAX) throw new RangeError(`epochs must be an integer in 0..${TRAIN_EPOCHS_MAX}, got ${r.epochs}`);
  if (!Number.isInteger(r.batchSize) || r.batchSize < 1 || r.batchSize > TRAIN_EXAMPLES_MAX) throw new RangeError(`batchSize must be a positive integer, got ${r.batchSize}`);
  if (!(r.lr >= 0 && r.lr < Infinity)) throw new RangeError(`lr must be finite and >= 0, got ${r.lr}`);
  if (!(r.weightDecay >= 0 && r.weightDecay < Infinity)) throw new RangeError(`weightDecay must be finite and >= 0, got ${r.weightDecay}`);
  if (r.optimizer !== "adamw" && r.optimizer !== "sgd") throw new RangeError(`optimizer must be "adamw" or "sgd", got ${String(r.optimizer)}`);
  if (r.schedule !== "constant" && r.schedule !== "cosine") throw new RangeError(`schedule must be "constant" or "cosine", got ${String(r.schedule)}`);
  if (!Number.isInteger(r.warmupSteps) || r.warmupSteps < 0) throw new RangeError(`warmupSteps must be a non-negative integer, got ${r.warmupSteps}`);
  if (!(r.minLrFraction >= 0 && r.minLrFraction <= 1)) throw new RangeError(`minLrFraction must be in [0, 1], got ${r.minLrFraction}`);
  if (!(r.momentum >= 0 && r.momentum < 1)) throw new RangeError(`momentum must be in [0, 1), got ${r.momentum}`);
  if (!(r.clipNorm >= 0)) throw new RangeError(`clipNorm must be >= 0 (0 or Infinity: no clipping), got ${r.clipNorm}`);
  return r;
}

/** Learning rate of step `s` (0-based) of `total` under the options' schedule. */
export function scheduledLr(s: number, total: number, o: Pick<ResolvedOptions, "lr" | "schedule" | "warmupSteps" | "minLrFraction">): number {
  if (o.schedule === "constant") return o.lr;
  const warm = Math.min(o.warmupSteps, Math.max(total - 1, 0));
  if (s < warm) return (o.lr * (s + 1)) / (warm + 1);
  const span = total - 1 - warm;
  const progress = span <= 0 ? 0 : (s - warm) / span; // a single post-warm-up step runs at lr
  const min = o.lr * o.minLrFraction;
  return min + 0.5 * (o.lr - min) * (1 + Math.cos(Math.PI * Math.min(progress, 1)));
}

/**
 * An incremental training of `params` (mutated in place) on `train`. Nothing runs in the
 * constructor beyond validation; runSteps(n) advances by at most n mini-batches.
 */
export class Trainer {
  readonly cfg: ModelConfig;
  readonly params: Float32Array;
  /** Optimizer steps of the whole training. */
  readonly steps: number;
  readonly #train: readonly Example[];
  readonly #opts: TrainOptions;
  readonly #o: ResolvedOptions;
  readonly #optimizer: AdamW | SGD;
  readonly #grad: Float32Array;
  readonly #ws: Workspace<Float32Array>;
  readonly #order: Int32Array;
  readonly #batch: Example[] = [];
  readonly #lossCurve: number[] = [];
  readonly #stepsPerEpoch: number;
  #step = 0;
  #epoch = 0;
  /** Position in #order within the current epoch. */
  #pos = 0;
  #epochLoss = 0;
  #epochSeen = 0;
  #lastLoss = NaN;
  #lastHeldOut: number | undefined;
  #stopped = false;

  constructor(cfg: ModelConfig, params: Float32Array, train: readonly Example[], opts: TrainOptions) {
    validateConfig(cfg);
    checkParams(cfg, params);
    this.#o = resolve(opts);
    if (train.length === 0) throw new RangeError("training needs at least one example");
    checkExamples(cfg, train, "train");
    if (opts.heldOut !== undefined) checkExamples(cfg, opts.heldOut, "heldOut");
    this.cfg = cfg;
    this.params = params;
    this.#train = train;
    this.#opts = opts;
    this.#stepsPerEpoch = Math.ceil(train.length / this.#o.batchSize);
    this.steps = this.#stepsPerEpoch * this.#o.epochs;
    const decayMask = weightDecayMask(cfg);
    this.#optimizer = this.#o.optimizer === "adamw"
      ? new AdamW(params.length, { lr: this.#o.lr, weightDecay: this.#o.weightDecay, decayMask })
      : new SGD(params.length, { lr: this.#o.lr, momentum: this.#o.momentum, weightDecay: this.#o.weightDecay, decayMask });
    this.#grad = new Float32Array(params.length);
    this.#ws = new Workspace(cfg, Float32Array, { training: true });
    this.#order = new Int32Array(train.length);
    for (let i = 0; i < train.length; i++) this.#order[i] = i;
  }

  get done(): boolean {
    return this.#stopped || this.#step >= this.steps;
  }

  /** Takes at most `n` steps (n ≥ 0; Infinity runs to the end) and reports where training is. */
  runSteps(n: number): StepsResult {
    if (!(n >= 0)) throw new RangeError(`runSteps needs n >= 0, got ${n}`);
    let taken = 0;
    while (taken < n && !this.done) {
      if (this.#opts.shouldStop?.() === true) {
        this.#stopped = true;
        break;
      }
      this.#oneStep();
      taken++;
    }
    return { ...this.progress(), taken, done: this.done };
  }

  /** Where the training is now. */
  progress(): TrainProgress {
    const loss = this.#epochSeen > 0 ? this.#epochLoss / this.#epochSeen : this.#lastLoss;
    const base = { epoch: this.#epoch, step: this.#step, steps: this.steps, loss };
    return this.#lastHeldOut === undefined ? base : { ...base, heldOutAccuracy: this.#lastHeldOut };
  }

  #oneStep(): void {
    const o = this.#o;
    const n = this.#train.length;
    if (this.#pos === 0) this.#shuffle();
    const end = Math.min(this.#pos + o.batchSize, n);
    const batch = this.#batch;
    batch.length = 0;
    for (let i = this.#pos; i < end; i++) batch.push(this.#train[this.#order[i] as number] as Example);
    this.#grad.fill(0);
    const loss = lossAndGrad(this.cfg, this.params, batch, this.#grad, this.#ws);
    if (o.clipNorm > 0 && o.clipNorm < Infinity) clipGradNorm(this.#grad, o.clipNorm);
    this.#optimizer.lr = scheduledLr(this.#step, this.steps, o);
    this.#optimizer.step(this.params, this.#grad);
    this.#step++;
    this.#epochLoss += loss * batch.length;
    this.#epochSeen += batch.length;
    this.#pos = end;
    if (end === n) this.#endEpoch();
  }

  #shuffle(): void {
    const order = this.#order;
    const rng = this.#opts.rng;
    for (let i = order.length - 1; i > 0; i--) {
      const j = rng.int(i + 1);
      const t = order[i] as number;
      order[i] = order[j] as number;
      order[j] = t;
    }
  }

  #endEpoch(): void {
    this.#lastLoss = this.#epochLoss / this.#epochSeen;
    this.#lossCurve.push(this.#lastLoss);
    this.#epoch++;
    this.#pos = 0;
    this.#epochLoss = 0;
    this.#epochSeen = 0;
    const onProgress = this.#opts.onProgress;
    if (onProgress === undefined) return;
    const heldOut = this.#opts.heldOut;
    if (heldOut !== undefined && heldOut.length > 0) this.#lastHeldOut = this.#accuracy(heldOut);
    onProgress(this.progress());
  }

  #accuracy(examples: readonly Example[]): number {
    const ws = new Workspace(this.cfg, Float32Array);
    let correct = 0;
    for (const ex of examples) if (predict(this.cfg, this.params, ex, ws) === ex.label) correct++;
    return correct / examples.length;
  }

  /** The report of the training so far (evaluates the current parameters). */
  report(): TrainReport {
    const ws = new Workspace(this.cfg, Float32Array);
    const onTrain = evaluate(this.cfg, this.params, this.#train, ws);
    const heldOut = this.#opts.heldOut;
    return {
      epochs: this.#epoch,
      steps: this.#step,
      finalLoss: onTrain.loss,
      trainAccuracy: onTrain.accuracy,
      heldOutAccuracy: heldOut === undefined || heldOut.length === 0 ? null : evaluate(this.cfg, this.params, heldOut, ws).accuracy,
      lossCurve: this.#lossCurve.slice(),
      stopped: this.#stopped,
    };
  }
}

/** Trains `params` in place to the end (or until shouldStop) and reports. Deterministic for a seed. */
export function trainModel(cfg: ModelConfig, params: Float32Array, train: readonly Example[], opts: TrainOptions): TrainReport {
  const trainer = new Trainer(cfg, params, train, opts);
  trainer.runSteps(Infinity);
  return trainer.report();
}
