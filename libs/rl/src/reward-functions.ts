/**
 * Evaluation of verifiable reward functions (rewardFunctionSchema in libs/contracts) over a batch of (prompt,
 * response, reference) pairs, and their combination with a reward model's scores by the spec's weights. The
 * declarative checks are pure and synchronous; the two that need the outside world, the moderation verdict and user
 * modules, come in as callbacks (the reward service passes moderation.check over NATS and the worker-thread module
 * runner). Not the reward model and not the service.
 */
import Ajv2020, { type ValidateFunction } from 'ajv/dist/2020';
import type { RewardFunction, RewardReference, RewardSpec } from '@flywheel/contracts';

export interface RewardContext {
  prompt: unknown;
  response: string;
  reference?: RewardReference;
}

export interface RewardCallbacks {
  /** Whether moderation lets each text through as output (no flag, no block). */
  moderate?: (texts: string[]) => Promise<boolean[]>;
  /** A module function's value for one pair (the runner enforces its time limit and maps failures to onError). */
  runModule?: (fn: Extract<RewardFunction, { kind: 'module' }>, ctx: RewardContext) => Promise<number>;
}

export class RewardFunctionError extends Error {
  constructor(
    readonly fn: string,
    message: string,
  ) {
    super(`reward function ${fn}: ${message}`);
    this.name = 'RewardFunctionError';
  }
}

const normalizeText = (s: string): string => s.trim().toLowerCase().replace(/\s+/g, ' ');

/** The first capture group of `pattern` in the response (the whole match without a group), or the response. */
function extracted(response: string, pattern: string | undefined): string | null {
  if (pattern === undefined) return response;
  const m = new RegExp(pattern).exec(response);
  if (!m) return null;
  return m[1] ?? m[0];
}

const NUMBER = /[-+]?(?:\d+(?:[.,]\d+)*(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?/g;

/** The last number written in `text` (thousands separators dropped), or null. */
export function lastNumber(text: string): number | null {
  const all = text.match(NUMBER);
  if (!all) return null;
  const raw = all[all.length - 1].replace(/,(?=\d{3}\b)/g, '');
  const n = Number(raw.replace(',', '.'));
  return Number.isFinite(n) ? n : null;
}

function referenceOf(fn: { name: string; reference: string }, ctx: RewardContext): string | number {
  const value = ctx.reference?.[fn.reference];
  if (value === undefined) throw new RewardFunctionError(fn.name, `the prompt has no reference column '${fn.reference}'`);
  return value;
}

const validators = new WeakMap<object, ValidateFunction>();
const ajv = new Ajv2020({ allErrors: false, strict: false });

function validatorFor(fn: Extract<RewardFunction, { kind: 'json_schema' }>): ValidateFunction {
  let v = validators.get(fn.schema);
  if (!v) {
    try {
      v = ajv.compile(fn.schema);
    } catch (err) {
      throw new RewardFunctionError(fn.name, `invalid JSON schema: ${(err as Error).message}`);
    }
    validators.set(fn.schema, v);
  }
  return v;
}

/** One declarative function's value for one pair; null for the functions that need a callback. */
export function evaluateDeclarative(fn: RewardFunction, ctx: RewardContext): number | null {
  switch (fn.kind) {
    case 'regex': {
      if (fn.mode === 'count') return (ctx.response.match(new RegExp(fn.pattern, `${fn.flags.replace('g', '')}g`)) ?? []).length;
      return new RegExp(fn.pattern, fn.flags).test(ctx.response) ? 1 : 0;
    }
    case 'exact': {
      const got = extracted(ctx.response, fn.extract);
      if (got === null) return 0;
      const want = String(referenceOf(fn, ctx));
      return (fn.normalize ? normalizeText(got) === normalizeText(want) : got === want) ? 1 : 0;
    }
    case 'numeric': {
      const got = extracted(ctx.response, fn.extract);
      const value = got === null ? null : lastNumber(got);
      const ref = referenceOf(fn, ctx);
      const want = typeof ref === 'number' ? ref : lastNumber(ref);
      if (value === null || want === null) return 0;
      return Math.abs(value - want) <= fn.tolerance * Math.max(1, Math.abs(want)) ? 1 : 0;
    }
    case 'json_schema': {
      const got = extracted(ctx.response, fn.extract);
      if (got === null) return 0;
      let parsed: unknown;
      try {
        parsed = JSON.parse(got);
      } catch {
        return 0;
      }
      return validatorFor(fn)(parsed) ? 1 : 0;
    }
    case 'length': {
      const n = fn.unit === 'words' ? ctx.response.trim().split(/\s+/).filter(Boolean).length : ctx.response.length;
      return (fn.min === undefined || n >= fn.min) && (fn.max === undefined || n <= fn.max) ? 1 : 0;
    }
    default:
      return null;
  }
}

/** Every function's values over the batch, by name. */
export async function evaluateRewardFunctions(functions: readonly RewardFunction[], pairs: readonly RewardContext[], cb: RewardCallbacks = {}): Promise<Record<string, number[]>> {
  const out: Record<string, number[]> = {};
  for (const fn of functions) {
    if (fn.kind === 'module' && !cb.runModule) throw new RewardFunctionError(fn.name, 'modules are not enabled here (the reward service loads them from FLYWHEEL_REWARD_FUNCTIONS_DIR)');
    if (fn.kind === 'moderation') {
      if (!cb.moderate) throw new RewardFunctionError(fn.name, 'no moderation service to ask');
      const allowed = await cb.moderate(pairs.map((p) => p.response));
      out[fn.name] = allowed.map((a) => (a ? 1 : 0));
    } else if (fn.kind === 'module') {
      const run = cb.runModule;
      if (!run) throw new RewardFunctionError(fn.name, 'modules are not enabled here');
      out[fn.name] = await Promise.all(pairs.map(async (p) => run(fn, p)));
    } else {
      out[fn.name] = pairs.map((p) => evaluateDeclarative(fn, p) as number);
    }
  }
  return out;
}

/** model × modelScores + Σ weight × function, per pair. */
export function combineRewards(spec: RewardSpec, modelScores: readonly number[] | null, components: Record<string, number[]>, n: number): number[] {
  return Array.from({ length: n }, (_, i) => {
    let s = spec.model > 0 && modelScores ? spec.model * modelScores[i] : 0;
    for (const fn of spec.functions) s += fn.weight * components[fn.name][i];
    return s;
  });
}
