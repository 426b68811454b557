/**
 * The Q8_0 path through the addon: the weight quantizer bit for bit against gguf-py (the committed golden made by
 * scripts/reference/q8_0_quantize_golden.py), the dequantizer, and the int8 matmul (AVX2 and portable) against the
 * f32 matmul of the dequantized weights within the activation-rounding bound. The kernel's own exactness tests are
 * native (native/test/kernels_test.cpp).
 */
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { findRepoRoot, nativeInfo, ops } from '.';
import { Xorshift32 } from './seeded-random';

const fixtures = path.join(findRepoRoot(__dirname) ?? '.', 'test', 'fixtures', 'q8_0-quantize');

function f32File(name: string): Float32Array {
  const b = readFileSync(path.join(fixtures, name));
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
}

describe('Q8_0 weights', () => {
  afterAll(() => ops.setForcePortable(false));

  it('quantizes bit for bit as gguf-py (ties, zero blocks, subnormal and overflowing f16 scales)', () => {
    const x = f32File('input.f32');
    const want = new Uint8Array(readFileSync(path.join(fixtures, 'expected.q8_0')));
    const got = ops.quantizeQ8_0(x);
    expect(got.length).toBe(want.length);
    const firstDiff = got.findIndex((v, i) => v !== want[i]);
    expect(firstDiff).toBe(-1);
  });

  it('dequantizes to d * q', () => {
    const blocks = new Uint8Array(34 * 2);
    const view = new DataView(blocks.buffer);
    view.setUint16(0, 0x3800, true); // 0.5
    view.setInt8(2, -128);
    view.setInt8(33, 7);
    view.setUint16(34, 0xc000, true); // -2
    view.setInt8(36, 3);
    const w = ops.dequantizeQ8_0(blocks);
    expect([w[0], w[1], w[31], w[32], w[34]]).toEqual([-64, 0, 3.5, -6, -0]);
  });

  it.each([
    [1, 64, 9],
    [1, 576, 40],
    [7, 224, 33],
    [20, 1120, 17],
  ])('matmul T=%i in=%i out=%i: both paths within the activation-rounding bound of the f32 reference', (T, n, o) => {
    const rng = new Xorshift32(T * 1000 + n);
    const x = Float32Array.from({ length: T * n }, () => (rng.next() - 0.5) * 4);
    const w = Float32Array.from({ length: o * n }, () => (rng.next() - 0.5) * 0.1);
    const blocks = ops.quantizeQ8_0(w);
    // A copy: arrays the addon makes belong to the outer realm, not to jest's sandbox that checkF32 tests against.
    const wq = Float32Array.from(ops.dequantizeQ8_0(blocks));
    const reference = ops.matmul(x, wq, { T, in: n, out: o });
    const paths = nativeInfo().avx2Supported ? [false, true] : [true];
    const results: Float32Array[] = [];
    for (const portable of paths) {
      ops.setForcePortable(portable);
      const y = ops.matmul(x, blocks, { T, in: n, out: o }, { dtype: 'q8_0' });
      // |x - d q| <= d/2 per element, d = max|x of the block| / 127.
      for (let t = 0; t < T; t++) {
        for (let r = 0; r < o; r++) {
          let bound = 1e-4;
          for (let b = 0; b < n / 32; b++) {
            let amax = 0;
            for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[t * n + b * 32 + j]));
            for (let j = 0; j < 32; j++) bound += (amax / 127 / 2) * Math.abs(wq[r * n + b * 32 + j]);
          }
          expect(Math.abs(y[t * o + r] - reference[t * o + r])).toBeLessThanOrEqual(bound);
        }
      }
      // Quantizing f32 weights in the op gives the same blocks, so the same result.
      expect(ops.matmul(x, w, { T, in: n, out: o }, { dtype: 'q8_0' })).toEqual(y);
      results.push(y);
    }
    if (results.length === 2) {
      for (let i = 0; i < results[0].length; i++) expect(results[1][i]).toBeCloseTo(results[0][i], 4);
    }
  });

  it('rejects rows that are not whole blocks', () => {
    expect(() => ops.quantizeQ8_0(new Float32Array(33))).toThrow(/multiple of 32/);
    expect(() => ops.matmul(new Float32Array(40), new Float32Array(40), { T: 1, in: 40, out: 1 }, { dtype: 'q8_0' })).toThrow(/multiple of 32/);
  });
});
