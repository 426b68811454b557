/**
 * runSft on models/stories260K and test/fixtures/sft: progress after every step, loss mask on assistant tokens,
 * and exact resume — a run stopped after its step-4 checkpoint and resumed ends with the same weights, bit for
 * bit, as one that never stopped (same thread count).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadCheckpoint } from '@flywheel/model';
import { buildSftExample } from './sft.examples';
import { runSft, type SftOptions, type SftProgress } from './sft.trainer';

const root = path.resolve(__dirname, '../../..');
const modelDir = path.join(root, 'models', 'stories260K');
const text = readFileSync(path.join(root, 'test', 'fixtures', 'sft', 'stories.jsonl'), 'utf8');

describe('runSft', () => {
  const dirs: string[] = [];
  const tmp = (): string => {
    const d = mkdtempSync(path.join(os.tmpdir(), 'sft-spec-'));
    dirs.push(d);
    return d;
  };
  afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

  const options = (outDir: string, extra: Partial<SftOptions> = {}): SftOptions => ({
    modelDir,
    data: { text, source: 'stories.jsonl' },
    outDir,
    steps: 8,
    lr: 3e-3,
    batchSize: 4,
    heldout: 0.2,
    seed: 3,
    threads: 1,
    checkpointEvery: 4,
    ...extra,
  });

  it('marks only the assistant reply and its EOS as targets', async () => {
    const ck = await loadCheckpoint(modelDir);
    const ex = buildSftExample(ck, [
      { role: 'user', content: 'Tell me a story about a cat.' },
      { role: 'assistant', content: 'The cat slept.' },
    ]);
    const first = ex.assistant.indexOf(true);
    expect(first).toBeGreaterThan(0);
    expect(ex.assistant.slice(first).every(Boolean)).toBe(true);
    expect(ex.ids[ex.ids.length - 1]).toBe(ck.generation.eosTokenIds[0]);
  });

  it('reports every step, lowers held-out loss, and resumes bit-exactly from a checkpoint', async () => {
    const seen: SftProgress[] = [];
    const whole = await runSft(options(tmp(), { onProgress: (p) => void seen.push(p) }));
    expect(seen.map((p) => p.step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(seen.every((p) => p.steps === 8 && p.gradNorm > 0 && p.lr > 0 && p.tokensPerS > 0)).toBe(true);
    expect(whole.heldoutLossAfter).toBeLessThan(whole.heldoutLossBefore);
    expect(whole.resumedFromStep).toBe(0);

    const out = tmp();
    const stop = new Error('stopped after the checkpoint');
    await expect(runSft(options(out, { onCheckpoint: () => { throw stop; } }))).rejects.toBe(stop);
    const resumedAt: number[] = [];
    const resumed = await runSft(options(out, { resume: true, onResume: (s) => void resumedAt.push(s) }));
    expect(resumedAt).toEqual([4]);
    expect(resumed.resumedFromStep).toBe(4);
    expect(resumed.heldoutLossBefore).toBe(whole.heldoutLossBefore);
    expect(resumed.trainLossFirst).toBe(whole.trainLossFirst);
    expect(resumed.trainLossLast).toBe(whole.trainLossLast);
    expect(resumed.heldoutLossAfter).toBe(whole.heldoutLossAfter);
    const a = (await loadCheckpoint(whole.outDir)).weights;
    const b = (await loadCheckpoint(resumed.outDir)).weights;
    for (const [name, w] of a) {
      const v = b.get(name)!;
      expect(Buffer.from(v.buffer, v.byteOffset, v.byteLength).equals(Buffer.from(w.buffer, w.byteOffset, w.byteLength))).toBe(true);
    }
  });

  it('starts afresh when the out dir holds the state of other options', async () => {
    const out = tmp();
    await runSft(options(out, { steps: 4 }));
    const r = await runSft(options(out, { steps: 4, lr: 1e-3, resume: true }));
    expect(r.resumedFromStep).toBe(0);
  });
  it('stops with a checkpoint when asked, and resumes from it', async () => {
    const out = tmp();
    let steps = 0;
    const stopped = runSft(options(out, { checkpointEvery: 0, onProgress: () => void steps++, shouldStop: () => steps >= 3 }));
    await expect(stopped).rejects.toMatchObject({ name: 'SftStoppedError', step: 3 });
    expect((await runSft(options(out, { resume: true }))).resumedFromStep).toBe(3);
  });
});
