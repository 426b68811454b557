/**
 * A strict parser of the GGUF v2/v3 header (little-endian): magic, counts, metadata key/values, tensor infos
 * and the aligned start of tensor data (ggml/docs/gguf.md). Every count and length is checked against the
 * bytes the file really has, so a truncated or corrupt header is a ModelLoadError, never garbage.
 * It reads no tensor data and knows nothing about model architectures (gguf.reader does).
 */
import type { FileHandle } from 'node:fs/promises';
import { ModelLoadError } from './model-load.error';

export type GgufValue = number | bigint | boolean | string | GgufValue[];

export interface GgufTensorInfo {
  name: string;
  /** ne[0..n): fastest-varying first (ne[0] is a row's length, i.e. in_features). */
  dims: number[];
  /** ggml_type id (0 F32, 1 F16, 8 Q8_0, 30 BF16, ...). */
  type: number;
  /** Byte offset from the start of the tensor data section. */
  offset: number;
}

export interface GgufHeader {
  version: number;
  metadata: Map<string, GgufValue>;
  tensors: GgufTensorInfo[];
  alignment: number;
  /** Absolute file offset of the tensor data section. */
  dataOffset: number;
  fileSize: number;
}

const MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
const MAX_DIMS = 4;
const CHUNK = 1 << 20;

/** Minimum encoded size of one value of each GGUF metadata type, for sanity checks on array counts. */
const VALUE_BYTES: Record<number, number> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 8: 8, 9: 12, 10: 8, 11: 8, 12: 8 };

/** Buffered sequential reads over a file handle; running past the end is a ModelLoadError. */
class HeaderCursor {
  private buf = Buffer.alloc(0);
  private bufStart = 0;
  pos = 0;
  private readonly decoder = new TextDecoder('utf-8', { fatal: true });

  constructor(
    private readonly fh: FileHandle,
    private readonly file: string,
    readonly fileSize: number,
  ) {}

  get remaining(): number {
    return this.fileSize - this.pos;
  }

  private async ensure(n: number, what: string): Promise<void> {
    if (this.pos + n > this.fileSize) {
      throw new ModelLoadError(
        `GGUF header ends early: ${what} needs ${n} bytes at byte ${this.pos} but the file is ${this.fileSize} bytes (truncated?)`,
        this.file,
      );
    }
    if (this.pos + n <= this.bufStart + this.buf.length) return;
    const length = Math.min(Math.max(n, CHUNK), this.fileSize - this.pos);
    const next = Buffer.alloc(length);
    let done = 0;
    while (done < length) {
      const { bytesRead } = await this.fh.read(next, done, length - done, this.pos + done);
      if (bytesRead === 0) throw new ModelLoadError(`unexpected end of file at byte ${this.pos + done}`, this.file);
      done += bytesRead;
    }
    this.buf = next;
    this.bufStart = this.pos;
  }

  private at(): number {
    return this.pos - this.bufStart;
  }

  async u32(what: string): Promise<number> {
    await this.ensure(4, what);
    const v = this.buf.readUInt32LE(this.at());
    this.pos += 4;
    return v;
  }

  async u64(what: string): Promise<bigint> {
    await this.ensure(8, what);
    const v = this.buf.readBigUInt64LE(this.at());
    this.pos += 8;
    return v;
  }

  /** A u64 used as a count or size: must be a safe integer. */
  async size(what: string): Promise<number> {
    const v = await this.u64(what);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new ModelLoadError(`${what} ${v} is impossibly large`, this.file);
    return Number(v);
  }

  async string(what: string): Promise<string> {
    const length = await this.size(`length of ${what}`);
    if (length > this.remaining) {
      throw new ModelLoadError(`${what} claims ${length} bytes but only ${this.remaining} remain (truncated or corrupt)`, this.file);
    }
    await this.ensure(length, what);
    const start = this.at();
    this.pos += length;
    try {
      return this.decoder.decode(this.buf.subarray(start, start + length));
    } catch {
      throw new ModelLoadError(`${what} is not valid UTF-8`, this.file);
    }
  }

  async value(type: number, what: string, depth = 0): Promise<GgufValue> {
    const width = VALUE_BYTES[type];
    if (width === undefined) throw new ModelLoadError(`${what} has unknown GGUF value type ${type}`, this.file);
    if (type === 8) return this.string(what);
    if (type === 9) {
      if (depth > 2) throw new ModelLoadError(`${what} nests arrays too deeply`, this.file);
      const elemType = await this.u32(`element type of ${what}`);
      const count = await this.size(`length of ${what}`);
      const elemBytes = VALUE_BYTES[elemType];
      if (elemBytes === undefined) throw new ModelLoadError(`${what} has unknown element type ${elemType}`, this.file);
      if (count * elemBytes > this.remaining) {
        throw new ModelLoadError(`${what} claims ${count} elements, more than the file can hold (truncated or corrupt)`, this.file);
      }
      const out: GgufValue[] = new Array<GgufValue>(count);
      for (let i = 0; i < count; i++) out[i] = await this.value(elemType, what, depth + 1);
      return out;
    }
    await this.ensure(width, what);
    const at = this.at();
    this.pos += width;
    switch (type) {
      case 0: return this.buf.readUInt8(at);
      case 1: return this.buf.readInt8(at);
      case 2: return this.buf.readUInt16LE(at);
      case 3: return this.buf.readInt16LE(at);
      case 4: return this.buf.readUInt32LE(at);
      case 5: return this.buf.readInt32LE(at);
      case 6: return this.buf.readFloatLE(at);
      case 7: {
        const b = this.buf.readUInt8(at);
        if (b > 1) throw new ModelLoadError(`${what} is a bool with byte value ${b}`, this.file);
        return b === 1;
      }
      case 10: return this.buf.readBigUInt64LE(at);
      case 11: return this.buf.readBigInt64LE(at);
      default: return this.buf.readDoubleLE(at);
    }
  }
}

/** Parses and validates the header; tensor byte ranges are checked by the caller, which knows type sizes. */
export async function parseGgufHeader(fh: FileHandle, file: string): Promise<GgufHeader> {
  const { size: fileSize } = await fh.stat();
  const c = new HeaderCursor(fh, file, fileSize);
  if (fileSize < 4 || (await c.u32('magic')) !== MAGIC) throw new ModelLoadError('not a GGUF file (no "GGUF" magic)', file);
  const version = await c.u32('version');
  if (version !== 2 && version !== 3) {
    const hint = version > 0xffff ? ' (a big-endian GGUF? only little-endian is supported)' : '';
    throw new ModelLoadError(`unsupported GGUF version ${version}${hint}; Flywheel reads versions 2 and 3`, file);
  }
  const tensorCount = await c.size('tensor count');
  const kvCount = await c.size('metadata count');
  // Each key/value takes at least 12 bytes and each tensor info at least 24, which bounds honest counts.
  if (kvCount * 12 + tensorCount * 24 > c.remaining) {
    throw new ModelLoadError(`header claims ${tensorCount} tensors and ${kvCount} metadata entries, more than the file holds`, file);
  }

  const metadata = new Map<string, GgufValue>();
  for (let i = 0; i < kvCount; i++) {
    const key = await c.string(`metadata key #${i}`);
    const type = await c.u32(`type of metadata "${key}"`);
    if (metadata.has(key)) throw new ModelLoadError(`metadata key "${key}" appears twice`, file);
    metadata.set(key, await c.value(type, `metadata "${key}"`));
  }

  const tensors: GgufTensorInfo[] = [];
  for (let i = 0; i < tensorCount; i++) {
    const name = await c.string(`name of tensor #${i}`);
    const nDims = await c.u32(`dimension count of tensor "${name}"`);
    if (nDims === 0 || nDims > MAX_DIMS) throw new ModelLoadError(`tensor "${name}" has ${nDims} dimensions`, file);
    const dims: number[] = [];
    for (let d = 0; d < nDims; d++) {
      const dim = await c.size(`dimension ${d} of tensor "${name}"`);
      if (dim === 0) throw new ModelLoadError(`tensor "${name}" has a zero dimension`, file);
      dims.push(dim);
    }
    const type = await c.u32(`type of tensor "${name}"`);
    const offset = await c.size(`offset of tensor "${name}"`);
    tensors.push({ name, dims, type, offset });
  }

  const rawAlignment = metadata.get('general.alignment') ?? 32;
  const alignment = typeof rawAlignment === 'number' ? rawAlignment : Number.NaN;
  if (!Number.isInteger(alignment) || alignment <= 0 || (alignment & (alignment - 1)) !== 0) {
    throw new ModelLoadError(`general.alignment ${String(rawAlignment)} is not a power of two`, file);
  }
  for (const t of tensors) {
    if (t.offset % alignment !== 0) {
      throw new ModelLoadError(`tensor "${t.name}" offset ${t.offset} is not a multiple of the alignment ${alignment}`, file);
    }
  }
  const dataOffset = Math.ceil(c.pos / alignment) * alignment;
  return { version, metadata, tensors, alignment, dataOffset, fileSize };
}
