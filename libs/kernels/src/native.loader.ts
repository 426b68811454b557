/**
 * Finds and loads the built addon (native/build/Release/flywheel_native.node) and declares its raw, unchecked
 * signatures. Only kernels.ts calls into what this returns; everything else goes through the checked API there.
 * Works from TypeScript sources (ts-jest) and from compiled dist/ alike: the repo root is the nearest ancestor
 * directory whose package.json is named "flywheel".
 */
import * as fs from 'fs';
import * as path from 'path';

/** Shape-describing objects passed to the raw attention ops. */
export interface RawAttentionShape {
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  blockSize: number;
}

/** Opaque native external; only the addon can make one. */
export type NativeExternal = object;

/** modelCreate's arguments: the spec, the tensors by name, the served dtype, the pool's threads, each tensor's type. */
type ModelCreateParams = [spec: object, names: string[], tensors: (Float32Array | Uint8Array)[], dtype: string, threads: number, types?: string[]];

/** The addon's exports, exactly as binding/addon.cpp defines them. Arguments are NOT validated here. */
export interface NativeAddon {
  info(): {
    simd: 'avx2' | 'portable';
    avx2Supported: boolean;
    avx512Vnni: boolean;
    avxVnni: boolean;
    amx: boolean;
    hardwareThreads: number;
    opsThreads: number;
  };
  setForcePortable(on: boolean): 'avx2' | 'portable';
  setOpsThreads(threads: number): void;
  modelCreate(...args: ModelCreateParams): NativeExternal;
  /** modelCreate on a worker thread. */
  modelCreateAsync(...args: ModelCreateParams): Promise<NativeExternal>;
  modelFree(model: NativeExternal): void;
  modelSetThreads(model: NativeExternal, threads: number): void;
  modelSetStepMode(model: NativeExternal, mode: string): void;
  modelInfo(model: NativeExternal): {
    threads: number;
    matmulWeightBytes: number;
    storageBytes: number;
    weightTypes: Record<string, number>;
  };
  cacheCreate(model: NativeExternal, numBlocks: number, blockSize: number, kvDtype?: string): NativeExternal;
  cacheFree(cache: NativeExternal): void;
  cacheCopyBlocks(cache: NativeExternal, src: Int32Array, dst: Int32Array): void;
  cacheReadLayer(cache: NativeExternal, layer: number): { k: Float32Array; v: Float32Array };
  forward(
    model: NativeExternal,
    cache: NativeExternal,
    tokens: Int32Array,
    positions: Int32Array,
    seqIndex: Int32Array,
    blockTables: Int32Array,
    maxBlocksPerSeq: number,
    logitRows: Int32Array,
  ): Promise<Float32Array>;
  triad(bytesPerArray: number, threads: number): Promise<number>;
  softmaxWeights(x: Float32Array, max: number, invT: number, out: Float64Array): number;
  topKIds(x: Float32Array, k: number, out: Int32Array): number;
  nucleusIds(x: Float32Array, w: Float64Array, max: number, total: number, p: number, out: Int32Array): number;
  opMatmul(
    x: Float32Array,
    w: Float32Array | Uint8Array,
    bias: Float32Array | null,
    T: number,
    inFeatures: number,
    outFeatures: number,
    dtype: string,
    init: Float32Array | null,
  ): Float32Array;
  opRmsnorm(x: Float32Array, weight: Float32Array, T: number, C: number, eps: number): Float32Array;
  opRope(
    x: Float32Array,
    positions: Int32Array,
    T: number,
    numHeads: number,
    headDim: number,
    theta: number,
    scaling: object | null,
  ): Float32Array;
  opSwiglu(gate: Float32Array, up: Float32Array, T: number, I: number): Float32Array;
  opEmbedding(table: Float32Array, tokens: Int32Array, C: number, dtype: string): Float32Array;
  opQuantizeQ8_0(x: Float32Array): Uint8Array;
  opDequantizeQ8_0(blocks: Uint8Array): Float32Array;
  opQuantize(type: string, x: Float32Array): Uint8Array;
  opDequantize(type: string, blocks: Uint8Array): Float32Array;
  opAttentionPrefill(
    q: Float32Array,
    kPool: Float32Array,
    vPool: Float32Array,
    blockTable: Int32Array,
    startPos: number,
    T: number,
    shape: RawAttentionShape,
  ): Float32Array;
  opAttentionDecode(
    q: Float32Array,
    kPool: Float32Array,
    vPool: Float32Array,
    positions: Int32Array,
    blockTables: Int32Array,
    maxBlocks: number,
    shape: RawAttentionShape,
  ): Float32Array;
}

export const NATIVE_RELATIVE_PATH = path.join('native', 'build', 'Release', 'flywheel_native.node');

/** The nearest ancestor of `start` (inclusive) whose package.json has name "flywheel", or null. */
export function findRepoRoot(start: string): string | null {
  let dir = path.resolve(start);
  for (;;) {
    const pkg = path.join(dir, 'package.json');
    if (fs.existsSync(pkg)) {
      try {
        const parsed: unknown = JSON.parse(fs.readFileSync(pkg, 'utf8'));
        if (typeof parsed === 'object' && parsed !== null && 'name' in parsed && parsed.name === 'flywheel') return dir;
      } catch {
        // unreadable package.json: keep walking up
      }
    }
    const parent = path.dirname(dir);
    if (parent === dir) return null;
    dir = parent;
  }
}

let loaded: NativeAddon | undefined;

/** Loads the addon once; throws an Error that says how to build it when it is missing. */
export function loadNative(): NativeAddon {
  if (loaded) return loaded;
  const root = findRepoRoot(__dirname) ?? findRepoRoot(process.cwd());
  if (root === null) {
    throw new Error(`flywheel native addon: cannot find the repository root (package.json named "flywheel") above ${__dirname}`);
  }
  const file = path.join(root, NATIVE_RELATIVE_PATH);
  if (!fs.existsSync(file)) {
    throw new Error(`flywheel native addon not built: ${file} is missing. Run \`npm run build:native\` first.`);
  }
  // The binding's types are declared by hand above (NativeAddon); require() cannot know them.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  loaded = require(file) as NativeAddon;
  return loaded;
}
