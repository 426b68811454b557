// Verifiable reward functions: each declarative kind on cases that pass and fail, the combination by weights, and
// user modules in worker threads (JavaScript and TypeScript, a throw, a non-number, an endless loop killed at its
// time limit, and a worker that comes back after it).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { rewardSpecSchema, type RewardFunctionInput } from '@flywheel/contracts';
import { combineRewards, evaluateRewardFunctions, lastNumber, RewardFunctionError } from './reward-functions';
import { RewardModuleRunner } from './reward-module.runner';

const spec = (functions: RewardFunctionInput[], model = 0) => rewardSpecSchema.parse({ model, functions });
const pair = (response: string, reference?: Record<string, string | number>) => ({ prompt: 'q', response, reference });

describe('declarative reward functions', () => {
  it('regex: a match, or the number of matches', async () => {
    const s = spec([
      { name: 'period', kind: 'regex', pattern: '\\.$' },
      { name: 'happy', kind: 'regex', pattern: 'happy', flags: 'i', mode: 'count' },
    ]);
    const c = await evaluateRewardFunctions(s.functions, [pair('Happy, so happy.'), pair('sad')]);
    expect(c).toEqual({ period: [1, 0], happy: [2, 0] });
  });

  it('exact and numeric against the reference column, with extraction', async () => {
    const s = spec([
      { name: 'name', kind: 'exact', reference: 'hero', extract: 'named\\s+(\\w+)' },
      { name: 'sum', kind: 'numeric', reference: 'answer', tolerance: 0.01 },
    ]);
    const c = await evaluateRewardFunctions(s.functions, [
      pair('A dog named  LILY. So 1,234.5 in all', { hero: 'lily', answer: 1234.5 }),
      pair('A dog named Tom; 12 in all', { hero: 'lily', answer: '13' }),
      pair('no number here', { hero: 'x', answer: 5 }),
    ]);
    expect(c).toEqual({ name: [1, 0, 0], sum: [1, 0, 0] });
    expect(lastNumber('from -3 to 4.5e2')).toBe(450);
    await expect(evaluateRewardFunctions(s.functions, [pair('x', {})])).rejects.toBeInstanceOf(RewardFunctionError);
  });

  it('json_schema and length bounds', async () => {
    const s = spec([
      { name: 'json', kind: 'json_schema', schema: { type: 'object', properties: { n: { type: 'integer' } }, required: ['n'] } },
      { name: 'short', kind: 'length', unit: 'words', min: 1, max: 3 },
    ]);
    const c = await evaluateRewardFunctions(s.functions, [pair('{"n": 3}'), pair('{"n": "3"}'), pair('not json at all here')]);
    expect(c).toEqual({ json: [1, 0, 0], short: [1, 1, 0] });
  });

  it('moderation asks the callback; combine weighs every part', async () => {
    const s = spec([{ name: 'safe', kind: 'moderation', weight: 2 }, { name: 'dot', kind: 'regex', pattern: '\\.', weight: -1 }], 0.5);
    const c = await evaluateRewardFunctions(s.functions, [pair('fine.'), pair('bad')], { moderate: async (t) => t.map((x) => x !== 'bad') });
    expect(c).toEqual({ safe: [1, 0], dot: [1, 0] });
    expect(combineRewards(s, [4, 10], c, 2)).toEqual([0.5 * 4 + 2 - 1, 0.5 * 10]);
    expect(() => rewardSpecSchema.parse({ model: 0, functions: [] })).toThrow(/reward model/);
    expect(() => rewardSpecSchema.parse({ functions: [{ name: 'a', kind: 'length' }, { name: 'a', kind: 'length' }] })).toThrow(/twice/);
  });
});

describe('reward modules in worker threads', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'reward-modules-'));
  const runner = new RewardModuleRunner(dir);
  afterAll(async () => {
    await runner.close();
    rmSync(dir, { recursive: true, force: true });
  });
  writeFileSync(path.join(dir, 'len.js'), 'exports.reward = (ctx) => ctx.response.length + (ctx.reference.bonus ?? 0);\n');
  writeFileSync(path.join(dir, 'typed.ts'), 'export async function score(ctx: { response: string }): Promise<number> {\n  const n: number = ctx.response.split(" ").length;\n  return n * 10;\n}\n');
  writeFileSync(path.join(dir, 'bad.js'), 'let calls = 0;\nexports.reward = (ctx) => { calls++; if (ctx.response === "loop") { for (;;) {} } if (ctx.response === "throw") throw new Error("no"); if (ctx.response === "nan") return "x"; return calls; };\n');

  it('runs JavaScript and TypeScript modules', async () => {
    const c = await evaluateRewardFunctions(
      spec([
        { name: 'len', kind: 'module', path: 'len.js' },
        { name: 'words', kind: 'module', path: 'typed.ts', export: 'score' },
      ]).functions,
      [pair('a b c', { bonus: 1 }), pair('')],
      { runModule: runner.run },
    );
    expect(c).toEqual({ len: [6, 0], words: [30, 10] });
  });

  it('scores onError for a throw, a non-number and an endless loop (killed at its limit), then works again', async () => {
    const fn = spec([{ name: 'bad', kind: 'module', path: 'bad.js', timeoutMs: 300, onError: -1 }]).functions;
    const started = Date.now();
    const c = await evaluateRewardFunctions(fn, [pair('throw'), pair('nan'), pair('loop')], { runModule: runner.run });
    expect(c.bad).toEqual([-1, -1, -1]);
    expect(Date.now() - started).toBeLessThan(5_000);
    // A fresh worker (the looping one was terminated): its call counter starts again.
    expect((await evaluateRewardFunctions(fn, [pair('ok')], { runModule: runner.run })).bad).toEqual([1]);
  }, 20_000);
});
