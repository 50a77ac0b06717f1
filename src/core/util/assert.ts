// Invariant checks that stay on in production (aesthetics rule 9). A failed assertion is a
// programmer error: it throws AssertionFailure, which the node treats as fatal (it exits and is
// restarted, recovering from its durable store). Expected failures are values, never assertions.

export class AssertionFailure extends Error {
  override name = "AssertionFailure";
}

export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new AssertionFailure(message);
}

export function assertDefined<T>(value: T, message: string): asserts value is NonNullable<T> {
  if (value === undefined || value === null) throw new AssertionFailure(message);
}

export function assertNever(value: never, message = "Unexpected variant"): never {
  throw new AssertionFailure(`${message}: ${JSON.stringify(value)}`);
}
