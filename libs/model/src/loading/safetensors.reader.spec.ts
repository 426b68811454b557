/**
 * Specs of the safetensors reader: the real models/stories260K file, 16-bit dtypes, shards, and one crafted broken
 * file per header check (written to os.tmpdir()), each expected to fail as a ModelLoadError naming the file.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { ModelLoadError } from './model-load.error';
import { committedModelDir } from './model-files.testing';
import { readSafetensorsCheckpoint, readSafetensorsFile, readSafetensorsHeader } from './safetensors.reader';

interface RawTensor {
  name: string;
  dtype: string;
  shape: number[];
  bytes: Uint8Array;
  /** Override the offsets written to the header. */
  offsets?: [number, number];
}

/** A minimal safetensors writer for crafting good and broken files. */
function safetensorsBytes(tensors: RawTensor[], trailing = 0): Buffer {
  const header: Record<string, unknown> = {};
  let offset = 0;
  for (const t of tensors) {
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: t.offsets ?? [offset, offset + t.bytes.length] };
    offset += t.bytes.length;
  }
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([len, json, ...tensors.map((t) => Buffer.from(t.bytes)), Buffer.alloc(trailing)]);
}

const f32 = (...v: number[]) => new Uint8Array(new Float32Array(v).buffer);

describe('safetensors reader', () => {
  let tmp: string;
  beforeAll(() => {
    tmp = mkdtempSync(path.join(tmpdir(), 'flywheel-safetensors-'));
  });
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));
  const write = (name: string, bytes: Uint8Array) => {
    const file = path.join(tmp, name);
    writeFileSync(file, bytes);
    return file;
  };
  const storiesFile = () => path.join(committedModelDir(), 'model.safetensors');

  it('reads the 47 F32 tensors of models/stories260K', async () => {
    const tensors = await readSafetensorsFile(storiesFile());
    expect(tensors.size).toBe(47);
    const embed = tensors.get('model.embed_tokens.weight');
    expect(embed?.shape).toEqual([512, 64]);
    expect(embed?.sourceDtype).toBe('F32');
    expect(tensors.get('model.layers.0.self_attn.k_proj.weight')?.shape).toEqual([32, 64]);
    let params = 0;
    for (const t of tensors.values()) params += t.data.length;
    expect(params).toBe(260032);
  });

  it('widens F16 and BF16 tensors', async () => {
    const file = write(
      'half.safetensors',
      safetensorsBytes([
        { name: 'a', dtype: 'F16', shape: [2], bytes: new Uint8Array(new Uint16Array([0x3c00, 0xc000]).buffer) },
        { name: 'b', dtype: 'BF16', shape: [2], bytes: new Uint8Array(new Uint16Array([0x3f80, 0xbfc0]).buffer) },
      ]),
    );
    const tensors = await readSafetensorsFile(file);
    expect(Array.from(tensors.get('a')?.data ?? [])).toEqual([1, -2]);
    expect(Array.from(tensors.get('b')?.data ?? [])).toEqual([1, -1.5]);
    expect(tensors.get('b')?.sourceDtype).toBe('BF16');
  });

  it('reads sharded checkpoints through model.safetensors.index.json', async () => {
    const dir = mkdtempSync(path.join(tmp, 'sharded-'));
    writeFileSync(path.join(dir, 'model-00001-of-00002.safetensors'), safetensorsBytes([{ name: 'x', dtype: 'F32', shape: [2], bytes: f32(1, 2) }]));
    writeFileSync(path.join(dir, 'model-00002-of-00002.safetensors'), safetensorsBytes([{ name: 'y', dtype: 'F32', shape: [1], bytes: f32(3) }]));
    const weightMap = { x: 'model-00001-of-00002.safetensors', y: 'model-00002-of-00002.safetensors' };
    writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 12 }, weight_map: weightMap }));
    const tensors = await readSafetensorsCheckpoint(dir);
    expect(Array.from(tensors.get('x')?.data ?? [])).toEqual([1, 2]);
    expect(Array.from(tensors.get('y')?.data ?? [])).toEqual([3]);

    writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { ...weightMap, z: weightMap.y } }));
    await expect(readSafetensorsCheckpoint(dir)).rejects.toThrow(/tensor "z" listed in the index is missing/);
  });

  describe('rejects broken files with a ModelLoadError naming the file', () => {
    const cases: [string, () => Uint8Array, RegExp][] = [
      ['a file shorter than the length prefix', () => new Uint8Array(5), /too short/],
      ['an absurd header length', () => Buffer.from([255, 255, 255, 255, 255, 255, 255, 255, 0]), /header length .* is not sane/],
      ['a header cut off by truncation', () => readFileSync(storiesFile()).subarray(0, 100), /header claims \d+ bytes but the file is 100 bytes/],
      ['tensor data cut off by truncation', () => readFileSync(storiesFile()).subarray(0, 600_000), /tensor "model\.layers\.\d\..*" ends at data byte \d+ but the file holds only/],
      ['a header that is not JSON', () => { const b = safetensorsBytes([{ name: 'x', dtype: 'F32', shape: [1], bytes: f32(1) }]); b[12] = 0x7b; return b; }, /not valid JSON/],
      ['a header entry without shape', () => { const json = Buffer.from('{"x":{"dtype":"F32","data_offsets":[0,4]}}'); const len = Buffer.alloc(8); len.writeBigUInt64LE(BigInt(json.length)); return Buffer.concat([len, json, Buffer.from(f32(1))]); }, /tensor "x" has a malformed header entry \(shape/],
      ['a shape that disagrees with the byte size', () => safetensorsBytes([{ name: 'x', dtype: 'F32', shape: [3], bytes: f32(1, 2) }]), /tensor "x" \(F32, shape \[3\]\) needs 12 bytes but its data_offsets span 8/],
      ['overlapping tensors', () => safetensorsBytes([{ name: 'x', dtype: 'F32', shape: [1], bytes: f32(1) }, { name: 'y', dtype: 'F32', shape: [1], bytes: f32(2), offsets: [0, 4] }]), /contiguous/],
      ['trailing bytes after the data', () => safetensorsBytes([{ name: 'x', dtype: 'F32', shape: [1], bytes: f32(1) }], 4), /trailing bytes/],
      ['an unknown dtype', () => safetensorsBytes([{ name: 'x', dtype: 'Q4', shape: [1], bytes: new Uint8Array(1) }]), /tensor "x" has unknown dtype "Q4"/],
    ];
    it.each(cases)('%s', async (_what, bytes, message) => {
      const file = write('broken.safetensors', bytes());
      const err = await readSafetensorsFile(file).catch((e: unknown) => e);
      if (!(err instanceof ModelLoadError)) throw new Error(`expected a ModelLoadError, got ${String(err)}`);
      expect(err.message).toMatch(message);
      expect(err.file).toBe(file);
    });

    it('an I8 tensor: valid header, unsupported dtype', async () => {
      const file = write('int8.safetensors', safetensorsBytes([{ name: 'model.q', dtype: 'I8', shape: [4], bytes: new Uint8Array(4) }]));
      await expect(readSafetensorsHeader(file)).resolves.toMatchObject({ tensors: [{ name: 'model.q', dtype: 'I8' }] });
      await expect(readSafetensorsFile(file)).rejects.toThrow(`${file}: tensor "model.q" has dtype I8; Flywheel loads F32, F16, BF16`);
    });

    it('a missing file', async () => {
      await expect(readSafetensorsFile(path.join(tmp, 'nope.safetensors'))).rejects.toThrow(/cannot open \(ENOENT\)/);
    });
  });
});
