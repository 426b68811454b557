/**
 * Specs of the f16/bf16 → f32 widening against hand-computed bit patterns (subnormals, infinities, NaN).
 */
import { bf16ArrayToF32, f16ArrayToF32, f16BitsToF32 } from './half-float.codec';

describe('half-float codec', () => {
  it('widens f16 exactly, including subnormals, infinities and NaN', () => {
    const bits = new Uint16Array([0x3c00, 0xc000, 0x7bff, 0x0001, 0x0400, 0x8000, 0x7c00, 0xfc00, 0x7e00, 0x3555]);
    const out = f16ArrayToF32(bits);
    expect(Array.from(out.subarray(0, 8))).toEqual([1, -2, 65504, 2 ** -24, 2 ** -14, -0, Infinity, -Infinity]);
    expect(out[8]).toBeNaN();
    expect(out[9]).toBe(Math.fround(0.333251953125));
    expect(f16BitsToF32(0x3c00)).toBe(1);
  });

  it('widens bf16 as the top half of an f32', () => {
    const out = bf16ArrayToF32(new Uint16Array([0x3f80, 0xc049, 0x0000, 0x8000, 0x7f80]));
    expect(Array.from(out)).toEqual([1, Math.fround(-3.140625), 0, -0, Infinity]);
  });
});
