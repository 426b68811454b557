import { completionRowOf } from './record.writes';
import { completionRecord } from './store.testing';

const verdict = (action: 'allow' | 'flag' | 'block') => ({
  action,
  blockedCategories: action === 'block' ? ['violence' as const] : [],
  flaggedCategories: action === 'flag' ? ['violence' as const] : [],
});

describe('completionRowOf', () => {
  it('stores the moderation verdicts and flags a completion any check did more than allow', () => {
    const clean = completionRowOf(completionRecord('chatcmpl-a'));
    expect(clean.flagged).toBe(false);
    expect(clean.moderation).toBeNull();
    const base = completionRecord('chatcmpl-b');
    const moderation = {
      input: { ...verdict('allow'), model: 'flywheel-moderation', source: 'service' as const },
      output: [{ ...verdict('block'), index: 0, cutOffset: 12, generatedChars: 40 }],
    } as NonNullable<typeof base.moderation>;
    const row = completionRowOf({ ...base, moderation });
    expect(row.flagged).toBe(true);
    expect(JSON.parse(String(row.moderation))).toMatchObject({ output: [{ action: 'block', cutOffset: 12 }] });
    const allowed = { ...moderation, output: [{ ...moderation.output[0]!, ...verdict('allow'), cutOffset: null }] };
    expect(completionRowOf({ ...base, moderation: allowed }).flagged).toBe(false);
  });
});
