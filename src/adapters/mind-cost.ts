// What a frontier mind's tokens cost: USD per million input and output tokens, from the providers'
// public price lists for the well-known model names (standard tier, no batch or cache discounts,
// the lowest context tier; a snapshot — set `price` in a mind's config to override). A model is
// matched by the longest name in the table that its name starts with ("claude-sonnet-4-5-20250929"
// is "claude-sonnet-4-5"). Local minds cost 0; a frontier model not in the table costs unknown:
// counted as 0 and flagged (MindCounters' `priced`).
import type { Provider } from "../core/self/minds.ts";

/** USD per million tokens. */
export interface Price { readonly inputPerM: number; readonly outputPerM: number }

const PRICES: Readonly<Record<Provider, Readonly<Record<string, Price>>>> = {
  openai: {
    "gpt-5": { inputPerM: 1.25, outputPerM: 10 },
    "gpt-5-mini": { inputPerM: 0.25, outputPerM: 2 },
    "gpt-5-nano": { inputPerM: 0.05, outputPerM: 0.4 },
    "gpt-4.1": { inputPerM: 2, outputPerM: 8 },
    "gpt-4.1-mini": { inputPerM: 0.4, outputPerM: 1.6 },
    "gpt-4.1-nano": { inputPerM: 0.1, outputPerM: 0.4 },
    "gpt-4o": { inputPerM: 2.5, outputPerM: 10 },
    "gpt-4o-mini": { inputPerM: 0.15, outputPerM: 0.6 },
    "o3": { inputPerM: 2, outputPerM: 8 },
    "o3-mini": { inputPerM: 1.1, outputPerM: 4.4 },
    "o4-mini": { inputPerM: 1.1, outputPerM: 4.4 },
    "text-embedding-3-small": { inputPerM: 0.02, outputPerM: 0 },
    "text-embedding-3-large": { inputPerM: 0.13, outputPerM: 0 },
  },
  anthropic: {
    "claude-opus-4-5": { inputPerM: 5, outputPerM: 25 },
    "claude-opus-4-1": { inputPerM: 15, outputPerM: 75 },
    "claude-opus-4": { inputPerM: 15, outputPerM: 75 },
    "claude-sonnet-4-5": { inputPerM: 3, outputPerM: 15 },
    "claude-sonnet-4": { inputPerM: 3, outputPerM: 15 },
    "claude-haiku-4-5": { inputPerM: 1, outputPerM: 5 },
    "claude-3-7-sonnet": { inputPerM: 3, outputPerM: 15 },
    "claude-3-5-sonnet": { inputPerM: 3, outputPerM: 15 },
    "claude-3-5-haiku": { inputPerM: 0.8, outputPerM: 4 },
    "claude-3-haiku": { inputPerM: 0.25, outputPerM: 1.25 },
  },
  gemini: {
    "gemini-2.5-pro": { inputPerM: 1.25, outputPerM: 10 },
    "gemini-2.5-flash": { inputPerM: 0.3, outputPerM: 2.5 },
    "gemini-2.5-flash-lite": { inputPerM: 0.1, outputPerM: 0.4 },
    "gemini-2.0-flash": { inputPerM: 0.1, outputPerM: 0.4 },
    "gemini-2.0-flash-lite": { inputPerM: 0.075, outputPerM: 0.3 },
    "gemini-embedding-001": { inputPerM: 0.15, outputPerM: 0 },
  },
};

/** The price of `model` at `provider`, or undefined when the table does not know it. */
export function priceOf(provider: Provider, model: string): Price | undefined {
  const table = PRICES[provider];
  const name = model.startsWith("models/") ? model.slice("models/".length) : model;
  let best: string | undefined;
  for (const known of Object.keys(table)) {
    if ((name === known || name.startsWith(`${known}-`)) && (best === undefined || known.length > best.length)) best = known;
  }
  return best === undefined ? undefined : table[best];
}

/** Micro-dollars (1e-6 USD) for a call's tokens: USD per million tokens × tokens. */
export function costMicroUsd(price: Price, inputTokens: number, outputTokens: number): number {
  return price.inputPerM * inputTokens + price.outputPerM * outputTokens;
}
