/**
 * A ranking's contract: as a feedback body and as the admin `rank` action, choice indices best first, each once, at
 * least two; against its completion (rankingProblem) every choice of one prompt, nothing else. Time-ordered ids: the
 * UUIDv7 layout, with randomUUID and with the getRandomValues fallback of an insecure browser context.
 */
import { adminReviewActionSchema } from './admin.schemas';
import { feedbackCreateBodySchema, newTimeOrderedId, rankingProblem, timeOfTimeOrderedId } from './feedback.schemas';

const body = (value: unknown) => ({ completion_id: 'chatcmpl-1', kind: 'ranking', value });
const issues = (result: { success: boolean; error?: { issues: Array<{ path: PropertyKey[]; message: string }> } }) =>
  result.error?.issues.map((i) => [i.path.join('.'), i.message]) ?? [];

describe('ranking feedback', () => {
  it('takes choice indices best first', () => {
    expect(feedbackCreateBodySchema.parse(body([2, 0, 1]))).toMatchObject({ kind: 'ranking', value: [2, 0, 1] });
    expect(feedbackCreateBodySchema.parse(body([1, 0]))).toMatchObject({ value: [1, 0] });
  });

  it.each([
    [[2, 0, 2], [['value.2', 'choice 2 is ranked twice; rank each choice once']]],
    [[0], [['value', 'a ranking orders at least two choices']]],
    [[], [['value', 'a ranking orders at least two choices']]],
    [[0, 1.5], [['value.1', 'Invalid input: expected int, received number']]],
    [[0, 128], [['value.1', 'Too big: expected number to be <=127']]],
  ])('refuses %j, saying where and why', (value, expected) => {
    expect(issues(feedbackCreateBodySchema.safeParse(body(value)))).toEqual(expected);
  });

  it('is checked against its completion: every choice once, of one prompt', () => {
    expect(rankingProblem([2, 0, 1], 3)).toBeNull();
    expect(rankingProblem([1, 0], 2)).toBeNull();
    expect(rankingProblem([0, 1, 3], 3)).toBe('the completion has 3 choices (0 to 2), got 3');
    expect(rankingProblem([0, 1], 1)).toBe('the completion has 1 choice (0 to 0), got 1');
    expect(rankingProblem([3, 0], 4)).toBe('a ranking orders every choice of the completion (0 to 3, best first); missing 1, 2');
    expect(rankingProblem([0, 1, 2, 3], 4, 2)).toBe("the completion's choices answer 2 different prompts; only the choices of one prompt can be ranked");
  });

  it('is what the admin rank action takes as its order', () => {
    expect(adminReviewActionSchema.parse({ action: 'rank', completion_id: 'chatcmpl-1', order: [1, 2, 0], note: 'n' })).toEqual({
      action: 'rank',
      completion_id: 'chatcmpl-1',
      order: [1, 2, 0],
      note: 'n',
    });
    expect(issues(adminReviewActionSchema.safeParse({ action: 'rank', completion_id: 'chatcmpl-1', order: [1, 1] }))).toEqual([
      ['order.1', 'choice 1 is ranked twice; rank each choice once'],
    ]);
    expect(adminReviewActionSchema.safeParse({ action: 'rank', completion_id: 'chatcmpl-1', order: [1, 0], chosen: 1 }).success).toBe(false);
  });
});

describe('time-ordered ids', () => {
  const check = () => {
    const at = 1_765_000_000_123;
    const ids = Array.from({ length: 200 }, (_, i) => newTimeOrderedId(at + i));
    for (const [i, id] of ids.entries()) {
      expect(id).toMatch(/^[0-9a-f]{12}7[0-9a-f]{3}[89ab][0-9a-f]{15}$/);
      expect(timeOfTimeOrderedId(`chatcmpl-${id}`)).toBe(at + i);
    }
    expect(new Set(ids).size).toBe(200);
    expect([...ids].sort()).toEqual(ids);
    // The random part is random: 200 ids of one millisecond share no 74-bit tail, and they sort in the order they were
    // made (each adds a random step to the one before), keeping the layout.
    const same = Array.from({ length: 200 }, () => newTimeOrderedId(at + 500));
    expect(new Set(same.map((id) => id.slice(12))).size).toBe(200);
    expect([...same].sort()).toEqual(same);
    for (const id of same) expect(id).toMatch(/^[0-9a-f]{12}7[0-9a-f]{3}[89ab][0-9a-f]{15}$/);
    const steps = same.slice(1).map((id, i) => tailOf(id) - tailOf(same[i]!));
    expect(steps.every((d) => d >= 1n && d <= 2n ** 32n)).toBe(true);
    expect(new Set(steps).size).toBeGreaterThan(190);
    // An id for an earlier millisecond (a backfill) does not restart the newest millisecond's sequence.
    const before = newTimeOrderedId(at + 499);
    const after = newTimeOrderedId(at + 500);
    expect(before < same[0]!).toBe(true);
    expect(after > same[199]!).toBe(true);
  };
  /** The 74 random bits (rand_a, then rand_b after the 2 variant bits) as one number. */
  const tailOf = (id: string) => (BigInt(`0x${id.slice(13, 16)}`) << 62n) | (BigInt(parseInt(id[16]!, 16) & 3) << 60n) | BigInt(`0x${id.slice(17)}`);

  it('lays out 48 bits of milliseconds, version 7, the variant and random bits (randomUUID)', check);

  it('does the same with getRandomValues where randomUUID is missing (a browser over plain http)', () => {
    Object.defineProperty(globalThis.crypto, 'randomUUID', { value: undefined, configurable: true });
    try {
      check();
    } finally {
      delete (globalThis.crypto as { randomUUID?: unknown }).randomUUID;
    }
    expect(typeof globalThis.crypto.randomUUID).toBe('function');
  });
});
