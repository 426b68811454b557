/**
 * The one error type the checkpoint loaders throw: a file is missing, malformed, truncated or describes a
 * model Flywheel cannot serve. Its message names the file (and tensor or key) at fault.
 * It is not for bugs in the loader itself; those stay ordinary errors.
 */

export class ModelLoadError extends Error {
  override readonly name = 'ModelLoadError';

  constructor(
    message: string,
    /** The file the problem was found in, when there is one. */
    readonly file: string | null = null,
    options?: { cause?: unknown },
  ) {
    super(file === null ? message : `${file}: ${message}`, options);
  }
}

/** A short reason for an unknown thrown value: the errno code of a failed fs call, else the message. */
export function errorReason(err: unknown): string {
  // Duck-typed, not `instanceof Error`: errors from node:fs may come from another realm (e.g. under jest).
  if (typeof err === 'object' && err !== null) {
    if ('code' in err && typeof err.code === 'string') return err.code;
    if ('message' in err && typeof err.message === 'string') return err.message;
  }
  return String(err);
}
