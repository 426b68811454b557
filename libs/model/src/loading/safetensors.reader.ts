/**
 * Reads safetensors files (one `model.safetensors`, or shards listed by `model.safetensors.index.json`) into
 * row-major f32 arrays, converting F16/BF16. The header is validated strictly (sane length, JSON shape,
 * dtype × shape = byte size, tensors contiguous and inside the file) so a bad file is a ModelLoadError naming
 * file and tensor. It does not know model layouts or names (checkpoint.loader does) and it does not write files.
 */
import { readFile } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import * as path from 'node:path';
import { z } from 'zod';
import { bf16ArrayToF32, f16ArrayToF32 } from './half-float.codec';
import { isFile, openForRead, readExactly } from './checkpoint-file.io';
import { errorReason, ModelLoadError } from './model-load.error';

/** Element size in bytes of every safetensors dtype, so headers with dtypes we cannot convert still validate. */
const DTYPE_BYTES: Record<string, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U64: 8, U32: 4, U16: 2, U8: 1, BOOL: 1,
  F8_E4M3: 1, F8_E5M2: 1,
};
export const LOADABLE_SAFETENSORS_DTYPES = ['F32', 'F16', 'BF16'] as const;
export type LoadableSafetensorsDtype = (typeof LOADABLE_SAFETENSORS_DTYPES)[number];

/** The safetensors format caps the header at 100 MB; anything larger is corruption, not a model. */
const MAX_HEADER_BYTES = 100_000_000;

export interface SafetensorsTensorInfo {
  name: string;
  dtype: string;
  shape: number[];
  /** Byte range inside the file (already shifted past the 8-byte length and the header). */
  fileBegin: number;
  fileEnd: number;
}

export interface SafetensorsHeader {
  file: string;
  tensors: SafetensorsTensorInfo[];
  metadata: Record<string, string> | null;
}

/** One tensor as f32, with the dtype it had on disk. */
export interface LoadedTensor {
  shape: number[];
  sourceDtype: LoadableSafetensorsDtype;
  data: Float32Array;
}

const tensorEntrySchema = z.strictObject({
  dtype: z.string(),
  shape: z.array(z.int().nonnegative()),
  data_offsets: z.tuple([z.int().nonnegative(), z.int().nonnegative()]),
});
const metadataSchema = z.record(z.string(), z.string());

/**
 * Validates the header of a safetensors file whose total size is `fileSize`, given its JSON text.
 * `headerBytes` is the u64 length prefix; offsets are checked to tile [0, fileSize - 8 - headerBytes) exactly.
 */
export function parseSafetensorsHeader(
  file: string,
  headerText: string,
  headerBytes: number,
  fileSize: number,
): SafetensorsHeader {
  let json: unknown;
  try {
    json = JSON.parse(headerText);
  } catch (err) {
    throw new ModelLoadError(`safetensors header is not valid JSON (${errorReason(err)})`, file);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new ModelLoadError('safetensors header is not a JSON object', file);
  }
  const dataStart = 8 + headerBytes;
  const dataBytes = fileSize - dataStart;
  let metadata: Record<string, string> | null = null;
  const tensors: SafetensorsTensorInfo[] = [];
  for (const [name, value] of Object.entries(json)) {
    if (name === '__metadata__') {
      const m = metadataSchema.safeParse(value);
      if (!m.success) throw new ModelLoadError('safetensors __metadata__ must map strings to strings', file);
      metadata = m.data;
      continue;
    }
    const entry = tensorEntrySchema.safeParse(value);
    if (!entry.success) {
      const issue = entry.error.issues[0];
      throw new ModelLoadError(
        `tensor "${name}" has a malformed header entry (${issue.path.join('.') || 'entry'}: ${issue.message})`,
        file,
      );
    }
    const { dtype, shape, data_offsets: [begin, end] } = entry.data;
    const elemBytes = DTYPE_BYTES[dtype];
    if (elemBytes === undefined) throw new ModelLoadError(`tensor "${name}" has unknown dtype "${dtype}"`, file);
    if (end < begin) throw new ModelLoadError(`tensor "${name}" has data_offsets [${begin}, ${end}] with end < begin`, file);
    const expected = shape.reduce((a, b) => a * b, 1) * elemBytes;
    if (end - begin !== expected) {
      throw new ModelLoadError(
        `tensor "${name}" (${dtype}, shape [${shape.join(', ')}]) needs ${expected} bytes but its data_offsets span ${end - begin}`,
        file,
      );
    }
    if (end > dataBytes) {
      throw new ModelLoadError(
        `tensor "${name}" ends at data byte ${end} but the file holds only ${Math.max(0, dataBytes)} data bytes (truncated?)`,
        file,
      );
    }
    tensors.push({ name, dtype, shape, fileBegin: dataStart + begin, fileEnd: dataStart + end });
  }
  // Tensors must tile the data section with no gap and no overlap, as the reference implementation requires.
  const byOffset = [...tensors].sort((a, b) => a.fileBegin - b.fileBegin || a.fileEnd - b.fileEnd);
  let cursor = dataStart;
  for (const t of byOffset) {
    if (t.fileBegin !== cursor) {
      throw new ModelLoadError(
        `tensor "${t.name}" starts at data byte ${t.fileBegin - dataStart}, expected ${cursor - dataStart} (tensors must be contiguous, without overlap)`,
        file,
      );
    }
    cursor = t.fileEnd;
  }
  if (cursor !== fileSize) {
    throw new ModelLoadError(
      `tensor data ends at byte ${cursor} but the file is ${fileSize} bytes (trailing bytes or a wrong header)`,
      file,
    );
  }
  return { file, tensors, metadata };
}

/** Reads and validates the header of one safetensors file. */
export async function readSafetensorsHeader(file: string): Promise<SafetensorsHeader> {
  const fh = await openForRead(file);
  try {
    return await readHeaderFrom(fh, file);
  } finally {
    await fh.close();
  }
}

/**
 * Reads every tensor of one safetensors file as f32 (F32 copied, F16/BF16 widened exactly).
 * Any other dtype is a ModelLoadError naming the tensor.
 */
export async function readSafetensorsFile(file: string): Promise<Map<string, LoadedTensor>> {
  const fh = await openForRead(file);
  try {
    const header = await readHeaderFrom(fh, file);
    const out = new Map<string, LoadedTensor>();
    for (const t of header.tensors) out.set(t.name, await readTensor(fh, file, t));
    return out;
  } finally {
    await fh.close();
  }
}

const indexSchema = z.looseObject({
  metadata: z.looseObject({}).nullish(),
  weight_map: z.record(z.string(), z.string()),
});

export const SAFETENSORS_SINGLE_FILE = 'model.safetensors';
export const SAFETENSORS_INDEX_FILE = 'model.safetensors.index.json';

/**
 * Reads the weights of an HF checkpoint directory: `model.safetensors`, or the shards that
 * `model.safetensors.index.json` lists (each tensor must sit in the shard the index names, exactly once).
 */
export async function readSafetensorsCheckpoint(dir: string): Promise<Map<string, LoadedTensor>> {
  const single = path.join(dir, SAFETENSORS_SINGLE_FILE);
  const indexFile = path.join(dir, SAFETENSORS_INDEX_FILE);
  if (await isFile(single)) return readSafetensorsFile(single);
  if (!(await isFile(indexFile))) {
    throw new ModelLoadError(`no ${SAFETENSORS_SINGLE_FILE} or ${SAFETENSORS_INDEX_FILE} in the checkpoint`, dir);
  }
  let indexJson: unknown;
  try {
    indexJson = JSON.parse(await readFile(indexFile, 'utf8'));
  } catch (err) {
    throw new ModelLoadError(`cannot read the shard index (${errorReason(err)})`, indexFile);
  }
  const index = indexSchema.safeParse(indexJson);
  if (!index.success) throw new ModelLoadError('shard index has no weight_map of tensor name → shard file', indexFile);
  const shards = new Map<string, Set<string>>();
  for (const [name, shard] of Object.entries(index.data.weight_map)) {
    if (shard !== path.basename(shard)) {
      throw new ModelLoadError(`shard "${shard}" of tensor "${name}" must be a file name in the same folder`, indexFile);
    }
    let names = shards.get(shard);
    if (names === undefined) shards.set(shard, (names = new Set()));
    names.add(name);
  }
  const out = new Map<string, LoadedTensor>();
  for (const [shard, names] of shards) {
    const shardFile = path.join(dir, shard);
    const tensors = await readSafetensorsFile(shardFile);
    for (const [name, tensor] of tensors) {
      if (!names.has(name)) {
        throw new ModelLoadError(`tensor "${name}" is in ${shard} but the index does not place it there`, indexFile);
      }
      out.set(name, tensor);
    }
    for (const name of names) {
      if (!tensors.has(name)) throw new ModelLoadError(`tensor "${name}" listed in the index is missing`, shardFile);
    }
  }
  return out;
}

async function readHeaderFrom(fh: FileHandle, file: string): Promise<SafetensorsHeader> {
  const { size } = await fh.stat();
  if (size < 8) throw new ModelLoadError(`file is ${size} bytes, too short for a safetensors header`, file);
  const prefix = await readExactly(fh, file, 0, 8);
  const headerBytes64 = prefix.readBigUInt64LE(0);
  if (headerBytes64 > BigInt(MAX_HEADER_BYTES) || headerBytes64 < 2n) {
    throw new ModelLoadError(`safetensors header length ${headerBytes64} is not sane (2 .. ${MAX_HEADER_BYTES} bytes)`, file);
  }
  const headerBytes = Number(headerBytes64);
  if (8 + headerBytes > size) {
    throw new ModelLoadError(`safetensors header claims ${headerBytes} bytes but the file is ${size} bytes (truncated?)`, file);
  }
  const headerText = (await readExactly(fh, file, 8, headerBytes)).toString('utf8');
  return parseSafetensorsHeader(file, headerText, headerBytes, size);
}

async function readTensor(fh: FileHandle, file: string, t: SafetensorsTensorInfo): Promise<LoadedTensor> {
  const dtype = LOADABLE_SAFETENSORS_DTYPES.find((d) => d === t.dtype);
  if (dtype === undefined) {
    throw new ModelLoadError(
      `tensor "${t.name}" has dtype ${t.dtype}; Flywheel loads ${LOADABLE_SAFETENSORS_DTYPES.join(', ')}`,
      file,
    );
  }
  const bytes = await readExactly(fh, file, t.fileBegin, t.fileEnd - t.fileBegin);
  // readExactly returns a buffer at offset 0 of its own ArrayBuffer, so typed views are aligned.
  const n = t.shape.reduce((a, b) => a * b, 1);
  let data: Float32Array;
  if (dtype === 'F32') data = new Float32Array(bytes.buffer, 0, n);
  else if (dtype === 'F16') data = f16ArrayToF32(new Uint16Array(bytes.buffer, 0, n));
  else data = bf16ArrayToF32(new Uint16Array(bytes.buffer, 0, n));
  return { shape: t.shape, sourceDtype: dtype, data };
}
