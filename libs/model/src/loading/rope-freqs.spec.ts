import { kernelsReference } from '@flywheel/kernels';

const { refInvFreq } = kernelsReference;
import { llama3RopeFactors, llama3ScalingFromRopeFactors } from './rope-freqs';

/** Llama 3.1 and 3.2's own scalings, at their head dims and theta, and the tiny fixture's. */
const CASES = [
  { name: 'Llama 3.1 8B', headDim: 128, theta: 500000, scaling: { factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 } },
  { name: 'Llama 3.2 1B', headDim: 64, theta: 500000, scaling: { factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 } },
  { name: 'other band', headDim: 64, theta: 10000, scaling: { factor: 4, lowFreqFactor: 2, highFreqFactor: 6, originalMaxPositionEmbeddings: 2048 } },
  { name: 'tiny-mqa-llama3 (one smoothed frequency)', headDim: 8, theta: 10000, scaling: { factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 128 } },
];

describe('llama3 RoPE scaling from GGUF rope_freqs', () => {
  it.each(CASES)('$name: the recovered scaling gives the same frequencies as the original', ({ headDim, theta, scaling }) => {
    // What llama.cpp's converter stores, rounded to f32 as in the file.
    const stored = Float32Array.from(llama3RopeFactors(headDim, theta, scaling));
    const recovered = llama3ScalingFromRopeFactors(stored, headDim, theta)!;
    expect(recovered.factor).toBe(Math.fround(scaling.factor));
    expect(Number.isInteger(recovered.originalMaxPositionEmbeddings)).toBe(true); // the engine takes a whole context
    const want = refInvFreq(headDim, theta, scaling);
    const got = refInvFreq(headDim, theta, recovered);
    got.forEach((g, j) => expect(Math.abs(g - want[j]!) / want[j]!).toBeLessThan(1e-5));
  });

  it('all ones is no scaling; values no llama3 scaling makes are refused', () => {
    expect(llama3ScalingFromRopeFactors(new Float32Array(32).fill(1), 64, 500000)).toBeNull();
    const bumpy = Float32Array.from(llama3RopeFactors(64, 500000, CASES[1]!.scaling));
    bumpy[3] = 2.5; // a kept frequency divided: no llama3 band does that
    expect(() => llama3ScalingFromRopeFactors(bumpy, 64, 500000)).toThrow(/not a llama3 RoPE scaling/);
    expect(() => llama3ScalingFromRopeFactors(new Float32Array(3).fill(1), 64, 500000)).toThrow(/expected head_dim \/ 2 = 32/);
  });
});
