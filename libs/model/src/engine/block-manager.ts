/**
 * The paged KV cache's bookkeeping: fixed-size blocks, a free pool, one block table per sequence, reference
 * counts, prefix caching by block hash with LRU eviction, copy-on-write of shared partial blocks, and, for a model
 * whose every layer attends within a sliding window, the release of blocks that left the window.
 * It only decides which physical block holds which token; it never touches KV memory (the runner copies).
 */
import { createHash } from 'node:crypto';

export interface BlockManagerOptions {
  numBlocks: number;
  /** Tokens per block (16 in vLLM). */
  blockSize: number;
  enablePrefixCaching: boolean;
  /**
   * Every layer attends to the last slidingWindow positions only (Mistral): a sequence's blocks that lie wholly
   * before the window of its next query are released (see releaseOutsideWindow). Absent: blocks are kept.
   */
  slidingWindow?: number;
}

/** A block-table entry whose block was released because it left the sliding window; the kernels never read it. */
export const RELEASED_BLOCK = -1;

/** A pending KV copy the runner must perform before the step that writes into `dst`. */
export interface BlockCopy {
  src: number;
  dst: number;
}

interface SequenceBlocks {
  /** Physical block of logical block i. */
  blocks: number[];
  /** Hash chain of the sequence's leading full blocks whose KV is computed; hashes[i] names blocks[i]. */
  hashes: string[];
}

const ROOT_HASH = '';

/** Hash of a full block: its parent's hash plus its token ids, so equal hashes mean equal prefixes. */
export function hashBlock(parentHash: string, tokenIds: ArrayLike<number>): string {
  const ids = Int32Array.from(tokenIds as ArrayLike<number>);
  return createHash('sha256').update(parentHash).update(new Uint8Array(ids.buffer)).digest('base64');
}

export class BlockManager {
  readonly numBlocks: number;
  readonly blockSize: number;
  private readonly prefixCaching: boolean;
  private readonly slidingWindow: number | null;
  private readonly refCounts: Int32Array;
  /** The hash a block is registered under in `cachedByHash`, or null. */
  private readonly blockHashes: (string | null)[];
  private readonly cachedByHash = new Map<string, number>();
  /** refCount 0 and no hash: reusable at once. */
  private readonly freeUncached: number[] = [];
  /** refCount 0 but still holding a cached prefix; Map order is LRU order (first = evict first). */
  private readonly evictable = new Map<number, true>();
  private readonly sequences = new Map<number, SequenceBlocks>();
  private hitBlocks = 0;
  private queriedBlocks = 0;

  constructor(options: BlockManagerOptions) {
    if (!Number.isInteger(options.numBlocks) || options.numBlocks < 1) throw new RangeError('numBlocks must be a positive integer');
    if (!Number.isInteger(options.blockSize) || options.blockSize < 1) throw new RangeError('blockSize must be a positive integer');
    this.numBlocks = options.numBlocks;
    this.blockSize = options.blockSize;
    this.prefixCaching = options.enablePrefixCaching;
    if (options.slidingWindow !== undefined && (!Number.isInteger(options.slidingWindow) || options.slidingWindow < 1)) {
      throw new RangeError('slidingWindow must be a positive integer');
    }
    this.slidingWindow = options.slidingWindow ?? null;
    this.refCounts = new Int32Array(options.numBlocks);
    this.blockHashes = new Array<string | null>(options.numBlocks).fill(null);
    // Popped from the end, so block 0 is handed out first: easier to read in tests and dumps.
    for (let b = options.numBlocks - 1; b >= 0; b--) this.freeUncached.push(b);
  }

  /** Blocks a new allocation can take: truly free plus evictable cached ones. */
  get numFreeBlocks(): number {
    return this.freeUncached.length + this.evictable.size;
  }

  /** Fraction of blocks referenced by live sequences. */
  usage(): number {
    return 1 - this.numFreeBlocks / this.numBlocks;
  }

  stats(): { hitBlocks: number; queriedBlocks: number; cachedBlocks: number } {
    return { hitBlocks: this.hitBlocks, queriedBlocks: this.queriedBlocks, cachedBlocks: this.cachedByHash.size };
  }

  has(seqId: number): boolean {
    return this.sequences.has(seqId);
  }

  blockTable(seqId: number): readonly number[] {
    return this.get(seqId).blocks;
  }

  refCount(block: number): number {
    return this.refCounts[block]!;
  }

  blocksFor(numTokens: number): number {
    return Math.ceil(numTokens / this.blockSize);
  }

  /**
   * Starts a sequence (new, or recomputed after preemption) and takes references on the longest cached run
   * of its full blocks. At most floor((len-1)/blockSize) blocks hit, so at least the last token is computed
   * and yields logits. Returns how many leading tokens need no prefill.
   */
  startSequence(seqId: number, tokenIds: readonly number[]): number {
    if (this.sequences.has(seqId)) throw new Error(`sequence ${seqId} already has blocks`);
    const seq: SequenceBlocks = { blocks: [], hashes: [] };
    this.sequences.set(seqId, seq);
    if (!this.prefixCaching || tokenIds.length === 0) return 0;
    const maxHit = Math.floor((tokenIds.length - 1) / this.blockSize);
    let parent = ROOT_HASH;
    for (let i = 0; i < maxHit; i++) {
      this.queriedBlocks++;
      const hash = hashBlock(parent, tokenIds.slice(i * this.blockSize, (i + 1) * this.blockSize));
      const block = this.cachedByHash.get(hash);
      if (block === undefined) {
        this.queriedBlocks += maxHit - i - 1;
        break;
      }
      this.takeRef(block);
      seq.blocks.push(block);
      seq.hashes.push(hash);
      this.hitBlocks++;
      parent = hash;
    }
    return seq.blocks.length * this.blockSize;
  }

  /**
   * How many free blocks `reserveSlots(seqId, firstPos, endPos)` would take: new blocks for positions up to
   * endPos, plus one if the write starts inside a block other sequences share (copy-on-write).
   */
  blocksNeeded(seqId: number, firstPos: number, endPos: number): number {
    const seq = this.get(seqId);
    const extra = Math.max(0, this.blocksFor(endPos) - seq.blocks.length);
    const firstBlock = Math.floor(firstPos / this.blockSize);
    const shared = firstBlock < seq.blocks.length && this.refCounts[seq.blocks[firstBlock]!]! > 1;
    return extra + (shared ? 1 : 0);
  }

  /**
   * Makes positions [firstPos, endPos) writable for this sequence: appends blocks, and replaces a shared
   * block that the write lands in by a private copy. Returns the copies to run before the step, or null
   * (changing nothing) when the pool cannot supply the blocks.
   */
  reserveSlots(seqId: number, firstPos: number, endPos: number): BlockCopy[] | null {
    if (this.blocksNeeded(seqId, firstPos, endPos) > this.numFreeBlocks) return null;
    const seq = this.get(seqId);
    const copies: BlockCopy[] = [];
    // Only the block the write starts in can be shared: later ones are either new or were private already
    // (full blocks are shared, but positions are only ever written once, at or after firstPos).
    const firstBlock = Math.floor(firstPos / this.blockSize);
    if (firstBlock < seq.blocks.length) {
      const src = seq.blocks[firstBlock]!;
      if (this.refCounts[src]! > 1) {
        const dst = this.allocateBlock();
        this.refCounts[src]!--;
        seq.blocks[firstBlock] = dst;
        copies.push({ src, dst });
      }
    }
    while (seq.blocks.length < this.blocksFor(endPos)) seq.blocks.push(this.allocateBlock());
    return copies;
  }

  /**
   * Records that the first `numComputed` tokens' KV is in the cache, and publishes the newly full blocks
   * under their hashes. A hash already published by another block stays with that block.
   */
  markComputed(seqId: number, tokenIds: readonly number[], numComputed: number): void {
    if (!this.prefixCaching) return;
    const seq = this.get(seqId);
    const fullBlocks = Math.min(Math.floor(numComputed / this.blockSize), seq.blocks.length);
    for (let i = seq.hashes.length; i < fullBlocks; i++) {
      const parent = i === 0 ? ROOT_HASH : seq.hashes[i - 1]!;
      const hash = hashBlock(parent, tokenIds.slice(i * this.blockSize, (i + 1) * this.blockSize));
      seq.hashes.push(hash);
      const block = seq.blocks[i]!;
      if (block !== RELEASED_BLOCK && !this.cachedByHash.has(hash) && this.blockHashes[block] === null) {
        this.cachedByHash.set(hash, block);
        this.blockHashes[block] = hash;
      }
    }
  }

  /**
   * With a sliding window: releases the sequence's leading blocks that hold only positions before
   * nextPos - slidingWindow + 1, the first key the query at nextPos (and every later one) reads; their table entries
   * become RELEASED_BLOCK. Returns how many blocks it released (0 without a window). Cached blocks stay findable
   * by their hash until evicted, as after free().
   */
  releaseOutsideWindow(seqId: number, nextPos: number): number {
    if (this.slidingWindow === null) return 0;
    const seq = this.get(seqId);
    const firstKey = nextPos - this.slidingWindow + 1;
    const before = Math.min(Math.floor(firstKey / this.blockSize), seq.blocks.length);
    // Released blocks always form a prefix (the window only moves forward; a fork copies the prefix), so walk back
    // from the window's edge to the last one released: a step costs the blocks it releases, not the sequence's length.
    let first = before;
    while (first > 0 && seq.blocks[first - 1] !== RELEASED_BLOCK) first--;
    for (let i = first; i < before; i++) {
      this.dropRef(seq.blocks[i]!);
      seq.blocks[i] = RELEASED_BLOCK;
    }
    return before - first;
  }

  /** Gives `childId` the parent's blocks (shared, refcounted); the first write into a shared block copies it. */
  fork(parentId: number, childId: number): void {
    if (this.sequences.has(childId)) throw new Error(`sequence ${childId} already has blocks`);
    const parent = this.get(parentId);
    for (const block of parent.blocks) if (block !== RELEASED_BLOCK) this.refCounts[block]!++;
    this.sequences.set(childId, { blocks: [...parent.blocks], hashes: [...parent.hashes] });
  }

  /** Drops the sequence's references; cached blocks stay findable until evicted, tail blocks evicted first. */
  free(seqId: number): void {
    const seq = this.sequences.get(seqId);
    if (!seq) return;
    this.sequences.delete(seqId);
    for (let i = seq.blocks.length - 1; i >= 0; i--) {
      const block = seq.blocks[i]!;
      if (block !== RELEASED_BLOCK) this.dropRef(block);
    }
  }

  private dropRef(block: number): void {
    const left = --this.refCounts[block]!;
    if (left > 0) return;
    if (left < 0) throw new Error(`block ${block} refcount went negative`);
    if (this.blockHashes[block] !== null) this.evictable.set(block, true);
    else this.freeUncached.push(block);
  }

  /** Forgets every cached prefix (after a weight swap the old KV means nothing). Live tables are untouched. */
  resetPrefixCache(): void {
    for (const block of this.evictable.keys()) this.freeUncached.push(block);
    this.evictable.clear();
    this.cachedByHash.clear();
    this.blockHashes.fill(null);
    for (const seq of this.sequences.values()) seq.hashes.length = 0;
  }

  /** Throws if the bookkeeping disagrees with itself; for tests and debugging, O(numBlocks). */
  checkInvariants(): void {
    const expected = new Int32Array(this.numBlocks);
    for (const seq of this.sequences.values()) for (const block of seq.blocks) if (block !== RELEASED_BLOCK) expected[block]!++;
    const inFree = new Uint8Array(this.numBlocks);
    for (const block of this.freeUncached) inFree[block]! += 1;
    for (const block of this.evictable.keys()) inFree[block]! += 1;
    for (let b = 0; b < this.numBlocks; b++) {
      if (expected[b] !== this.refCounts[b]) throw new Error(`block ${b}: refcount ${this.refCounts[b]} but ${expected[b]} references`);
      const free = this.refCounts[b] === 0;
      if (free !== (inFree[b] === 1) || inFree[b]! > 1) throw new Error(`block ${b}: free-pool membership wrong`);
      if (this.evictable.has(b) && this.blockHashes[b] === null) throw new Error(`block ${b}: evictable without hash`);
    }
    for (const [hash, block] of this.cachedByHash) {
      if (this.blockHashes[block] !== hash) throw new Error(`hash map and block ${block} disagree`);
    }
  }

  private get(seqId: number): SequenceBlocks {
    const seq = this.sequences.get(seqId);
    if (!seq) throw new Error(`sequence ${seqId} has no blocks`);
    return seq;
  }

  private takeRef(block: number): void {
    if (this.refCounts[block] === 0) this.evictable.delete(block);
    this.refCounts[block]!++;
  }

  private allocateBlock(): number {
    let block = this.freeUncached.pop();
    if (block === undefined) {
      const lru = this.evictable.keys().next();
      if (lru.done) throw new Error('KV block pool exhausted');
      block = lru.value;
      this.evictable.delete(block);
      this.cachedByHash.delete(this.blockHashes[block]!);
      this.blockHashes[block] = null;
    }
    this.refCounts[block] = 1;
    return block;
  }
}
