/**
 * The one error type that crosses the mesh: a code from contracts plus a message (and the field at
 * fault for invalid payloads). Both the handler side and the client side speak it.
 */
import { ZodError } from 'zod';
import { meshErrorSchema, type MeshErrorBody, type MeshErrorCode } from '@flywheel/contracts';

export class MeshError extends Error {
  constructor(
    readonly code: MeshErrorCode,
    message: string,
    readonly param: string | null = null,
  ) {
    super(message);
    this.name = 'MeshError';
  }

  toBody(): MeshErrorBody {
    return { code: this.code, message: this.message, param: this.param };
  }

  /** Reads an `err` from a reply packet; anything unrecognised becomes `internal`. */
  static fromWire(err: unknown): MeshError {
    const parsed = meshErrorSchema.safeParse(err);
    if (parsed.success) return new MeshError(parsed.data.code, parsed.data.message, parsed.data.param ?? null);
    const message =
      typeof err === 'object' && err !== null && 'message' in err ? String((err as { message: unknown }).message) : String(err);
    return new MeshError('internal', message);
  }
}

/** What a handler replies with for any thrown value: zod failures name the field, the rest is internal. */
export function toMeshErrorBody(err: unknown): MeshErrorBody {
  if (err instanceof MeshError) return err.toBody();
  if (err instanceof ZodError) {
    const issue = err.issues[0];
    const param = issue && issue.path.length > 0 ? issue.path.join('.') : null;
    const where = param ? `${param}: ` : '';
    return { code: 'invalid_payload', message: `${where}${issue?.message ?? 'invalid payload'}`, param };
  }
  return { code: 'internal', message: 'internal error' };
}
