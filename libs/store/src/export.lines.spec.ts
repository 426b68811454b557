/**
 * Which approved feedback makes which JSONL line in the SFT, preference and KTO formats, byte for byte: corrections
 * become preference pairs too, and a ranking of k choices its k(k−1)/2 pairs (its top and bottom for KTO). The
 * moderation and prompts formats make no feedback lines.
 */
import { exportLinesOf, type ExportSource } from './export.lines';

/** The one line a feedback makes, or null when it makes none. */
const exportLineOf = (format: Parameters<typeof exportLinesOf>[0], source: ExportSource): string | null => {
  const lines = exportLinesOf(format, source);
  if (lines.length > 1) throw new Error(`expected at most one line, got ${lines.length}`);
  return lines[0] ?? null;
};

const chat: Omit<ExportSource, 'kind' | 'value' | 'choiceIndex'> = {
  endpoint: 'chat.completions',
  messages: [
    { role: 'system', content: 'Be kind.' },
    { role: 'user', content: 'Hi' },
  ],
  prompts: null,
  choices: [
    { index: 0, promptIndex: 0, text: 'Hello!', finishReason: 'stop', tokenIds: [1], logprobs: null },
    { index: 1, promptIndex: 0, text: 'Go away.', finishReason: 'stop', tokenIds: [2], logprobs: null },
  ],
};
const text: Omit<ExportSource, 'kind' | 'value' | 'choiceIndex'> = {
  endpoint: 'completions',
  messages: null,
  prompts: ['Once', [1, 2, 3]],
  choices: [
    { index: 0, promptIndex: 0, text: ' upon', finishReason: 'length', tokenIds: [4], logprobs: null },
    { index: 1, promptIndex: 1, text: ' a time', finishReason: 'length', tokenIds: [5], logprobs: null },
  ],
};
const prompt = [
  { role: 'system', content: 'Be kind.' },
  { role: 'user', content: 'Hi' },
];
const line = (format: 'sft' | 'preference' | 'kto' | 'prompts', src: Omit<ExportSource, 'kind' | 'value' | 'choiceIndex'>, kind: string, value: unknown, choiceIndex: number | null = 0) => {
  const out = exportLineOf(format, { ...src, kind, value, choiceIndex });
  return out === null ? null : JSON.parse(out);
};

describe('export lines', () => {
  it('SFT: the prompt plus the corrected, thumbed-up or well-rated answer', () => {
    expect(line('sft', chat, 'correction', 'Hello there!')).toEqual({ messages: [...prompt, { role: 'assistant', content: 'Hello there!' }] });
    expect(line('sft', chat, 'thumbs', 'up', 1)).toEqual({ messages: [...prompt, { role: 'assistant', content: 'Go away.' }] });
    expect(line('sft', chat, 'rating', 4)).toEqual({ messages: [...prompt, { role: 'assistant', content: 'Hello!' }] });
    expect(line('sft', chat, 'thumbs', 'down')).toBeNull();
    expect(line('sft', chat, 'rating', 3)).toBeNull();
    expect(line('sft', chat, 'flag', 'incorrect')).toBeNull();
    expect(line('sft', chat, 'thumbs', 'up', 7)).toBeNull();
    expect(line('sft', text, 'thumbs', 'up', 0)).toEqual({ messages: [{ role: 'user', content: 'Once' }, { role: 'assistant', content: ' upon' }] });
    // A prompt sent as token ids has no text to train on.
    expect(line('sft', text, 'thumbs', 'up', 1)).toBeNull();
  });

  it('preference: prompt, chosen and rejected choices as message lists', () => {
    expect(line('preference', chat, 'preference', { chosen: 0, rejected: 1 }, null)).toEqual({
      prompt,
      chosen: [{ role: 'assistant', content: 'Hello!' }],
      rejected: [{ role: 'assistant', content: 'Go away.' }],
    });
    expect(line('preference', chat, 'preference', { chosen: 0, rejected: 9 }, null)).toBeNull();
    expect(line('preference', chat, 'thumbs', 'up')).toBeNull();
  });

  it('preference: a correction is the corrected text chosen over the choice it corrects, unless it changes nothing', () => {
    expect(line('preference', chat, 'correction', 'Hello there!', 1)).toEqual({
      prompt,
      chosen: [{ role: 'assistant', content: 'Hello there!' }],
      rejected: [{ role: 'assistant', content: 'Go away.' }],
    });
    // No choice index: the first choice, as SFT and KTO read it.
    expect(line('preference', chat, 'correction', 'Hello there!', null)).toMatchObject({ rejected: [{ role: 'assistant', content: 'Hello!' }] });
    expect(line('preference', text, 'correction', ' upon a hill', 0)).toEqual({
      prompt: [{ role: 'user', content: 'Once' }],
      chosen: [{ role: 'assistant', content: ' upon a hill' }],
      rejected: [{ role: 'assistant', content: ' upon' }],
    });
    expect(line('preference', chat, 'correction', 'Hello!')).toBeNull();
    expect(line('preference', chat, 'correction', '  Hello!\n')).toBeNull();
    expect(line('preference', chat, 'correction', 'Hello there!', 7)).toBeNull();
    expect(line('preference', text, 'correction', 'words', 1)).toBeNull();
    expect(line('preference', chat, 'correction', '')).toBeNull();
    expect(exportLineOf('preference', { ...chat, kind: 'correction', value: 'Hello there!', choiceIndex: 0 })).toBe(
      '{"prompt":[{"role":"system","content":"Be kind."},{"role":"user","content":"Hi"}],"chosen":[{"role":"assistant","content":"Hello there!"}],"rejected":[{"role":"assistant","content":"Hello!"}]}',
    );
  });

  it('the prompts format is not made of feedback lines', () => {
    for (const [kind, value] of [['correction', 'Hello there!'], ['thumbs', 'up'], ['preference', { chosen: 0, rejected: 1 }]] as const) {
      expect(line('prompts', chat, kind, value)).toBeNull();
    }
  });

  it('KTO: desirable and undesirable answers with their label', () => {
    expect(line('kto', chat, 'thumbs', 'down', 1)).toEqual({ prompt, completion: [{ role: 'assistant', content: 'Go away.' }], label: false });
    expect(line('kto', chat, 'rating', 5)).toEqual({ prompt, completion: [{ role: 'assistant', content: 'Hello!' }], label: true });
    expect(line('kto', chat, 'rating', 2)).toMatchObject({ label: false });
    expect(line('kto', chat, 'rating', 3)).toBeNull();
    expect(line('kto', chat, 'correction', 'Hello there!')).toEqual({ prompt, completion: [{ role: 'assistant', content: 'Hello there!' }], label: true });
    expect(line('kto', chat, 'preference', { chosen: 0, rejected: 1 })).toBeNull();
  });

  it("a conversation that offered tools carries TRL's tools column (not when tool_choice was none)", () => {
    const tools = [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: {} } } }];
    const withTools = { ...chat, request: { model: 'm', messages: [], tools } };
    expect(line('sft', withTools, 'thumbs', 'up')).toEqual({ messages: [...prompt, { role: 'assistant', content: 'Hello!' }], tools });
    expect(line('preference', withTools, 'preference', { chosen: 0, rejected: 1 })).toMatchObject({ tools });
    expect(line('preference', withTools, 'correction', 'Sunny.')).toMatchObject({ tools });
    expect(line('kto', withTools, 'thumbs', 'down')).toMatchObject({ tools, label: false });
    expect(line('sft', { ...chat, request: { tools, tool_choice: 'none' } }, 'thumbs', 'up')).toEqual({ messages: [...prompt, { role: 'assistant', content: 'Hello!' }] });
  });

  describe('a ranking', () => {
    const threeChoices = [
      { index: 0, promptIndex: 0, text: 'Hello!', finishReason: 'stop', tokenIds: [1], logprobs: null },
      { index: 1, promptIndex: 0, text: 'Go away.', finishReason: 'stop', tokenIds: [2], logprobs: null },
      { index: 2, promptIndex: 0, text: 'Hi, how can I help?', finishReason: 'stop', tokenIds: [3], logprobs: null },
    ];
    const three: Omit<ExportSource, 'kind' | 'value' | 'choiceIndex'> = { ...chat, choices: threeChoices };
    const ranking = (value: unknown, src = three, format: 'preference' | 'kto' | 'sft' = 'preference') =>
      exportLinesOf(format, { ...src, kind: 'ranking', value, choiceIndex: null });
    const PROMPT = '"prompt":[{"role":"system","content":"Be kind."},{"role":"user","content":"Hi"}]';
    const HELP = '[{"role":"assistant","content":"Hi, how can I help?"}]';
    const HELLO = '[{"role":"assistant","content":"Hello!"}]';
    const AWAY = '[{"role":"assistant","content":"Go away."}]';

    it('of 3 choices is its 3 (better, worse) pairs, best pair first, byte for byte', () => {
      // #2 > #0 > #1: (2,0), (2,1), (0,1).
      expect(ranking([2, 0, 1])).toEqual([
        `{${PROMPT},"chosen":${HELP},"rejected":${HELLO}}`,
        `{${PROMPT},"chosen":${HELP},"rejected":${AWAY}}`,
        `{${PROMPT},"chosen":${HELLO},"rejected":${AWAY}}`,
      ]);
    });

    it('of k choices makes k(k−1)/2 pairs; one of 2 is a preference', () => {
      const five = { ...chat, choices: [0, 1, 2, 3, 4].map((i) => ({ index: i, promptIndex: 0, text: `answer ${i}`, finishReason: 'stop', tokenIds: [i], logprobs: null })) };
      expect(ranking([4, 3, 2, 1, 0], five)).toHaveLength(10);
      expect(ranking([1, 0], chat)).toEqual(exportLinesOf('preference', { ...chat, kind: 'preference', value: { chosen: 1, rejected: 0 }, choiceIndex: null }));
    });

    it('skips pairs of the same text, and makes nothing of a malformed ranking or one naming a missing choice', () => {
      const twin = { ...three, choices: threeChoices.map((c) => (c.index === 1 ? { ...c, text: ' Hello!\n' } : c)) };
      expect(ranking([2, 0, 1], twin).map((l) => JSON.parse(l).rejected[0].content)).toEqual(['Hello!', ' Hello!\n']);
      expect(ranking([2, 0, 5])).toEqual([]);
      expect(ranking([2, 2, 0])).toEqual([]);
      expect(ranking({ chosen: 0, rejected: 1 })).toEqual([]);
      expect(ranking([0, 1], text)).toEqual([]);
    });

    it('keeps the tools column on every pair', () => {
      const tools = [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: {} } } }];
      const lines = ranking([0, 1, 2], { ...three, request: { tools } });
      expect(lines.map((l) => JSON.parse(l).tools)).toEqual([tools, tools, tools]);
    });

    it('for KTO: the top choice desirable, the bottom one undesirable; nothing for SFT', () => {
      expect(ranking([2, 0, 1], three, 'kto')).toEqual([`{${PROMPT},"completion":${HELP},"label":true}`, `{${PROMPT},"completion":${AWAY},"label":false}`]);
      expect(ranking([2, 0, 1], three, 'sft')).toEqual([]);
    });
  });

  it('keeps key order stable, so files hash the same', () => {
    expect(exportLineOf('kto', { ...chat, kind: 'thumbs', value: 'up', choiceIndex: 0 })).toBe(
      '{"prompt":[{"role":"system","content":"Be kind."},{"role":"user","content":"Hi"}],"completion":[{"role":"assistant","content":"Hello!"}],"label":true}',
    );
  });
});
