/**
 * BlockManager invariants: no leaked blocks, consistent refcounts, prefix hits on the exact block ids,
 * copy-on-write of shared partial blocks, LRU eviction of cached blocks, the release of blocks that left a sliding
 * window. Pure bookkeeping, no model.
 */
import { BlockManager, RELEASED_BLOCK } from './block-manager';

const range = (n: number, from = 0): number[] => Array.from({ length: n }, (_, i) => from + i);

function computeAll(bm: BlockManager, seqId: number, tokens: number[]): void {
  expect(bm.reserveSlots(seqId, 0, tokens.length)).toEqual([]);
  bm.markComputed(seqId, tokens, tokens.length);
}

describe('BlockManager', () => {
  it('returns every block to the pool after random sequences finish (no leak, refcounts consistent)', () => {
    const bm = new BlockManager({ numBlocks: 64, blockSize: 16, enablePrefixCaching: true });
    let seed = 7;
    const rand = (n: number): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed % n;
    };
    const live = new Map<number, { tokens: number[]; computed: number }>();
    for (let op = 0; op < 2000; op++) {
      const id = rand(12);
      const s = live.get(id);
      if (!s) {
        const tokens = range(1 + rand(60)).map(() => 10 + rand(3)); // few distinct ids ⇒ many shared prefixes
        const computed = bm.startSequence(id, tokens);
        live.set(id, { tokens, computed });
      } else if (rand(5) === 0) {
        bm.free(id);
        live.delete(id);
      } else if (rand(4) === 0 && !live.has(id + 100)) {
        bm.fork(id, id + 100);
        live.set(id + 100, { tokens: [...s.tokens], computed: s.computed });
      } else {
        const end = Math.min(s.tokens.length + 1, s.computed + 1 + rand(20));
        while (s.tokens.length < end) s.tokens.push(10 + rand(3));
        if (bm.reserveSlots(id, s.computed, end)) {
          s.computed = end;
          bm.markComputed(id, s.tokens, end);
        }
      }
      bm.checkInvariants();
    }
    for (const id of live.keys()) bm.free(id);
    bm.checkInvariants();
    expect(bm.numFreeBlocks).toBe(64);
    expect(bm.usage()).toBe(0);
  });

  it('reuses the exact block ids of a cached prefix and skips their prefill', () => {
    const bm = new BlockManager({ numBlocks: 16, blockSize: 16, enablePrefixCaching: true });
    const a = range(40, 100);
    expect(bm.startSequence(1, a)).toBe(0);
    computeAll(bm, 1, a);
    const aBlocks = [...bm.blockTable(1)];
    expect(aBlocks).toHaveLength(3);

    const b = [...range(32, 100), 7, 8, 9];
    expect(bm.startSequence(2, b)).toBe(32);
    expect(bm.blockTable(2)).toEqual(aBlocks.slice(0, 2));
    expect(bm.refCount(aBlocks[0]!)).toBe(2);
    expect(bm.refCount(aBlocks[2]!)).toBe(1); // partial block never shared by hash
    expect(bm.stats().hitBlocks).toBe(2);

    bm.free(1);
    bm.free(2);
    const c = range(35, 100);
    expect(bm.startSequence(3, c)).toBe(32);
    expect(bm.blockTable(3)).toEqual(aBlocks.slice(0, 2));
    bm.free(3);
    bm.checkInvariants();
    expect(bm.numFreeBlocks).toBe(16);
  });

  it('always leaves the last prompt token to compute, so a fully cached prompt still yields logits', () => {
    const bm = new BlockManager({ numBlocks: 8, blockSize: 16, enablePrefixCaching: true });
    const p = range(32, 5);
    bm.startSequence(1, p);
    computeAll(bm, 1, p);
    expect(bm.startSequence(2, p)).toBe(16);
  });

  it('chains hashes: an equal block after a different prefix is not a hit', () => {
    const bm = new BlockManager({ numBlocks: 8, blockSize: 4, enablePrefixCaching: true });
    const a = [1, 2, 3, 4, 9, 9, 9, 9, 0];
    bm.startSequence(1, a);
    computeAll(bm, 1, a);
    expect(bm.startSequence(2, [5, 5, 5, 5, 9, 9, 9, 9, 0])).toBe(0);
  });

  it('copies a shared partial block on the first write of a forked sequence (copy-on-write)', () => {
    const bm = new BlockManager({ numBlocks: 8, blockSize: 16, enablePrefixCaching: true });
    const prompt = range(20);
    bm.startSequence(1, prompt);
    computeAll(bm, 1, prompt);
    const [full, partial] = bm.blockTable(1);
    bm.fork(1, 2);
    bm.fork(1, 3);
    expect(bm.refCount(partial!)).toBe(3);
    expect(bm.blocksNeeded(2, 20, 21)).toBe(1);

    const copies2 = bm.reserveSlots(2, 20, 21)!;
    expect(copies2).toHaveLength(1);
    expect(copies2[0]!.src).toBe(partial);
    expect(bm.blockTable(2)).toEqual([full, copies2[0]!.dst]);
    const copies3 = bm.reserveSlots(3, 20, 21)!;
    expect(copies3[0]!.src).toBe(partial);
    expect(new Set([copies2[0]!.dst, copies3[0]!.dst, partial]).size).toBe(3);
    // The last holder writes in place.
    expect(bm.reserveSlots(1, 20, 21)).toEqual([]);
    expect(bm.refCount(partial!)).toBe(1);
    expect(bm.refCount(full!)).toBe(3);
    // A write that starts a new block needs no copy.
    bm.fork(1, 4);
    expect(bm.reserveSlots(4, 32, 33)).toEqual([]);
    bm.checkInvariants();
    for (const id of [1, 2, 3, 4]) bm.free(id);
    bm.checkInvariants();
    expect(bm.numFreeBlocks).toBe(8);
  });

  it('evicts least recently used cached blocks, tail blocks of a sequence first', () => {
    const bm = new BlockManager({ numBlocks: 4, blockSize: 4, enablePrefixCaching: true });
    const a = range(12, 50); // 3 full blocks
    bm.startSequence(1, a);
    computeAll(bm, 1, a);
    const aBlocks = [...bm.blockTable(1)];
    bm.free(1);
    expect(bm.stats().cachedBlocks).toBe(3);
    expect(bm.numFreeBlocks).toBe(4);

    // Needs 2 blocks: the never-used block, then the LRU cached one (a's last block).
    const b = range(8, 200);
    bm.startSequence(2, b);
    expect(bm.reserveSlots(2, 0, 8)).toEqual([]);
    expect(bm.blockTable(2)).toContain(aBlocks[2]);
    expect(bm.stats().cachedBlocks).toBe(2);

    expect(bm.startSequence(3, [...a, 1])).toBe(8);
    expect(bm.blockTable(3)).toEqual(aBlocks.slice(0, 2));
    bm.checkInvariants();
  });

  it('refuses a reservation it cannot satisfy without changing anything', () => {
    const bm = new BlockManager({ numBlocks: 2, blockSize: 4, enablePrefixCaching: false });
    bm.startSequence(1, range(6));
    expect(bm.reserveSlots(1, 0, 6)).toEqual([]);
    bm.startSequence(2, range(6));
    expect(bm.reserveSlots(2, 0, 6)).toBeNull();
    expect(bm.blockTable(2)).toEqual([]);
    expect(bm.numFreeBlocks).toBe(0);
    bm.checkInvariants();
  });

  it('releases the blocks that left a sliding window, so a sequence outgrows the pool', () => {
    // Window 5, blocks of 4: the query at position p reads p-4..p, so block i is dead once (i+1)*4 <= p-4.
    const bm = new BlockManager({ numBlocks: 3, blockSize: 4, enablePrefixCaching: false, slidingWindow: 5 });
    bm.startSequence(1, []);
    let computed = 0;
    for (const end of [6, 7, 8, 9, 12, 13, 30]) {
      for (; computed < end; computed++) {
        expect(bm.reserveSlots(1, computed, computed + 1)).toEqual([]);
        bm.releaseOutsideWindow(1, computed + 1);
        bm.checkInvariants();
      }
      const table = bm.blockTable(1);
      const firstKey = end - 5 + 1; // of the next query, at position `end`
      table.forEach((block, i) => expect(block === RELEASED_BLOCK).toBe((i + 1) * 4 <= firstKey));
      // Every block the next query (and the block it writes) can touch is still held.
      expect(table.slice(Math.floor(Math.max(0, firstKey) / 4)).every((b) => b !== RELEASED_BLOCK)).toBe(true);
    }
    expect(bm.blockTable(1)).toHaveLength(8); // 30 positions in a pool of 3 blocks
    expect(bm.numFreeBlocks).toBe(1);
    bm.free(1);
    bm.checkInvariants();
    expect(bm.numFreeBlocks).toBe(3);
  });

  it('keeps refcounts right when forked and cached sequences release window blocks', () => {
    const bm = new BlockManager({ numBlocks: 32, blockSize: 4, enablePrefixCaching: true, slidingWindow: 6 });
    let seed = 11;
    const rand = (n: number): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed % n;
    };
    const live = new Map<number, { tokens: number[]; computed: number }>();
    for (let op = 0; op < 3000; op++) {
      const id = rand(10);
      const s = live.get(id);
      if (!s) {
        const tokens = range(1 + rand(30)).map(() => 10 + rand(2));
        live.set(id, { tokens, computed: bm.startSequence(id, tokens) });
      } else if (rand(6) === 0) {
        bm.free(id);
        live.delete(id);
      } else if (rand(5) === 0 && !live.has(id + 100)) {
        bm.fork(id, id + 100);
        live.set(id + 100, { tokens: [...s.tokens], computed: s.computed });
      } else {
        const end = Math.min(s.tokens.length + 1, s.computed + 1 + rand(6));
        while (s.tokens.length < end) s.tokens.push(10 + rand(2));
        if (bm.reserveSlots(id, s.computed, end)) {
          s.computed = end;
          bm.markComputed(id, s.tokens, end);
          bm.releaseOutsideWindow(id, end);
        }
      }
      bm.checkInvariants();
    }
    for (const id of live.keys()) bm.free(id);
    bm.checkInvariants();
    expect(bm.numFreeBlocks).toBe(32);
  });

  it('releases nothing without a sliding window', () => {
    const bm = new BlockManager({ numBlocks: 8, blockSize: 4, enablePrefixCaching: false });
    bm.startSequence(1, range(20));
    expect(bm.reserveSlots(1, 0, 20)).toEqual([]);
    expect(bm.releaseOutsideWindow(1, 20)).toBe(0);
    expect(bm.blockTable(1).includes(RELEASED_BLOCK)).toBe(false);
  });

  it('forgets cached prefixes on reset', () => {
    const bm = new BlockManager({ numBlocks: 4, blockSize: 4, enablePrefixCaching: true });
    const a = range(9);
    bm.startSequence(1, a);
    computeAll(bm, 1, a);
    bm.free(1);
    bm.resetPrefixCache();
    expect(bm.startSequence(2, a)).toBe(0);
    bm.checkInvariants();
  });
});
