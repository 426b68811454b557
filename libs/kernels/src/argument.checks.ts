/**
 * The number checks every checked function of this library runs before a value crosses into C++: each failure is
 * an Error naming the API it came from (`kernels: ...` for the engine, `training: ...` for the training path) and
 * the argument. Not array or shape checks (each API words those for its own arguments).
 */

export class ArgumentChecks {
  constructor(private readonly api: 'kernels' | 'training') {}

  fail(message: string): never {
    throw new Error(`${this.api}: ${message}`);
  }

  int(value: unknown, name: string, min: number, max = 2 ** 31 - 1): number {
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
      this.fail(`${name} must be an integer in [${min}, ${max}], got ${String(value)}`);
    }
    return value;
  }

  finite(value: unknown, name: string, min = -Infinity, max = Infinity): number {
    if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max) {
      this.fail(`${name} must be a finite number in [${min}, ${max}], got ${String(value)}`);
    }
    return value;
  }

  positive(value: unknown, name: string): number {
    if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) this.fail(`${name} must be a positive number`);
    return value;
  }
}

/** Checks of the engine API (kernels.ts, kernels.ops.ts). */
export const engineArgs: ArgumentChecks = new ArgumentChecks('kernels');
/** Checks of the training API (trainable-model.ts and the training.*.ts files). */
export const trainingArgs: ArgumentChecks = new ArgumentChecks('training');
