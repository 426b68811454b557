import path from 'node:path';
import { loadCheckpoint, packScoreBatch, rewardInputIds, type Checkpoint } from '@flywheel/model';
import { parsePreferenceJsonl } from './reward.trainer';

const MODEL = path.resolve(__dirname, '../../../models/stories260K');

describe('reward-model inputs', () => {
  let ck: Checkpoint;
  beforeAll(async () => {
    ck = await loadCheckpoint(MODEL);
  });

  const line = (chosen: string, rejected: string) =>
    JSON.stringify({ prompt: [{ role: 'user', content: 'Tell me a story.' }], chosen: [{ role: 'assistant', content: chosen }], rejected: [{ role: 'assistant', content: rejected }] });

  it('tokenizes a preference side exactly as the service tokenizes (prompt messages, response)', () => {
    const [pair] = parsePreferenceJsonl(ck, line('They were happy.', 'They were sad.'), 'prefs', 512);
    expect(pair.chosen).toEqual(rewardInputIds(ck, [{ role: 'user', content: 'Tell me a story.' }], 'They were happy.', 512));
    expect(pair.chosen).not.toEqual(pair.rejected);
  });

  it('keeps the end of a sequence longer than seqLen', () => {
    const full = rewardInputIds(ck, 'Once upon a time', ' there was a dog.', 512);
    expect(rewardInputIds(ck, 'Once upon a time', ' there was a dog.', 4)).toEqual(full.slice(-4));
  });

  it('names the line of a bad row and drops pairs whose sides are identical', () => {
    expect(() => parsePreferenceJsonl(ck, `${line('a', 'b')}\n{oops`, 'prefs.jsonl', 512)).toThrow('prefs.jsonl:2: not valid JSON');
    expect(() => parsePreferenceJsonl(ck, JSON.stringify({ prompt: [] }), 'prefs.jsonl', 512)).toThrow(/prefs.jsonl:1: not a preference line/);
    expect(parsePreferenceJsonl(ck, `${line('a', 'a')}\n${line('a', 'b')}\n`, 'p', 512)).toHaveLength(1);
    expect(() => parsePreferenceJsonl(ck, line('same', 'same'), 'p', 512)).toThrow('p: no preference pair with differing sides');
  });

  it('right-pads a batch with masked token 0', () => {
    const b = packScoreBatch([[5, 6, 7], [8]]);
    expect({ B: b.B, T: b.T, tokens: [...b.tokens], mask: [...b.mask] }).toEqual({ B: 2, T: 3, tokens: [5, 6, 7, 8, 0, 0], mask: [1, 1, 1, 1, 0, 0] });
  });
});
