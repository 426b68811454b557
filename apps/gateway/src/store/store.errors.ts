/**
 * How the store fails, as the gateway tells the cases apart: StoreUnavailableError (no open store, or the database
 * did not answer; a request gets 503 store_unavailable from the exception filter) and a refusal of the text itself
 * (a NUL byte or lone surrogate: the client's fault, or an unstorable record). Not the HTTP mapping (http/openai-error.ts).
 */

export class StoreUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StoreUnavailableError';
  }
}

/** Postgres / PGlite SQLSTATE 22021 (invalid byte sequence, e.g. 0x00 in text) or 22P05 (untranslatable character). */
export function isDatabaseTextEncodingError(err: unknown): boolean {
  const code = typeof err === 'object' && err !== null ? (err as { code?: unknown }).code : undefined;
  return code === '22021' || code === '22P05';
}
