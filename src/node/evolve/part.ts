// The Evolution layer's part: the programs on this node's hooks, and the evolver that deploys
// through them (one subsystem: `evolve` is a way to deploy a program).
import type { SubsystemContext } from "../subsystem-context.ts";
import { Evolver } from "./evolve.ts";
import { ProgramsPart } from "./programs.ts";

export class EvolvePart extends ProgramsPart {
  readonly evolver: Evolver;

  constructor(ctx: SubsystemContext) {
    super(ctx);
    this.evolver = new Evolver(ctx, this);
    this.audit = (step, text) => this.evolver.record(step, text);
  }
}
