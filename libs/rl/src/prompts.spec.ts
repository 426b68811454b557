/**
 * The prompts RL reads (parsePrompts): a preference / KTO line's prompt, an SFT line's messages up to the last
 * assistant turn, a plain text prompt; duplicates dropped keeping the first; a malformed line or a file without a
 * prompt refused with its source and line. And the seeded train / held-out split (splitPrompts) the PPO and eval jobs
 * both rebuild.
 */
import { parsePrompts, parsePromptSet, splitPrompts, type Prompt } from './prompts';

const line = (o: unknown) => JSON.stringify(o);
const user = (content: string) => ({ role: 'user' as const, content });
const assistant = (content: string) => ({ role: 'assistant' as const, content });

describe('parsePrompts', () => {
  it('reads every export format: preference and KTO prompts, SFT messages up to the last assistant turn, plain text', () => {
    const text = [
      line({ prompt: [user('A story about a cat.')], chosen: [assistant('yes')], rejected: [assistant('no')] }),
      line({ prompt: [{ role: 'system', content: 'Be kind.' }, user('A story about a dog.')], completion: [assistant('ok')], label: true }),
      line({ messages: [user('Which animal?'), assistant('A frog.'), user('Tell me more.'), assistant('It hops.')] }),
      line({ prompt: 'A story about a duck.' }),
    ].join('\n');
    expect(parsePrompts(text, 'mixed.jsonl')).toEqual<Prompt[]>([
      [user('A story about a cat.')],
      [{ role: 'system', content: 'Be kind.' }, user('A story about a dog.')],
      // The conversation before the final assistant turn, earlier assistant turns included.
      [user('Which animal?'), assistant('A frog.'), user('Tell me more.')],
      [user('A story about a duck.')],
    ]);
  });

  it('drops duplicate prompts (the first is kept, in file order), blank lines, and prompts without a user turn', () => {
    const text = [
      '',
      line({ prompt: 'B' }),
      line({ prompt: [user('A')], chosen: [assistant('1')], rejected: [assistant('2')] }),
      '   ',
      line({ prompt: 'A' }), // the same prompt as a text line
      line({ messages: [user('B'), assistant('reply')] }), // the same prompt as an SFT line
      line({ messages: [assistant('only an answer')] }),
      line({ prompt: [{ role: 'system', content: 'Be kind.' }] }), // no user turn: nothing is asked
      line({ messages: [{ role: 'system', content: 'Be kind.' }, assistant('hello')] }),
      line({ prompt: 'C' }),
    ].join('\n');
    expect(parsePrompts(text, 'dups.jsonl')).toEqual([[user('B')], [user('A')], [user('C')]]);
  });

  it('refuses a line that is not JSON or not a prompt, naming the source and the line', () => {
    expect(() => parsePrompts(`${line({ prompt: 'ok' })}\n{oops`, 'data.jsonl')).toThrow(/^data\.jsonl:2: not JSON$/);
    expect(() => parsePrompts(`${line({ prompt: 'ok' })}\n\n${line({ text: 'no prompt' })}`, 'data.jsonl')).toThrow(/^data\.jsonl:3: expected/);
    expect(() => parsePrompts(line({ prompt: '' }), 'empty.jsonl')).toThrow(/^empty\.jsonl:1: expected/);
    expect(() => parsePrompts(line({ prompt: [{ role: 'robot', content: 'x' }] }), 'role.jsonl')).toThrow(/^role\.jsonl:1: expected/);
  });

  it('refuses a file with no prompt in it', () => {
    expect(() => parsePrompts('\n  \n', 'blank.jsonl')).toThrow('blank.jsonl: no prompt found');
    expect(() => parsePrompts(line({ messages: [assistant('only an answer')] }), 'answers.jsonl')).toThrow('answers.jsonl: no prompt found');
  });
});

describe('splitPrompts', () => {
  const prompts: Prompt[] = Array.from({ length: 20 }, (_, i) => [user(`prompt ${i}`)]);
  const key = (p: Prompt) => p[0].content;

  it('holds out floor(n × share) prompts (at least one), never trained on, and keeps every prompt once', () => {
    const { train, heldout } = splitPrompts(prompts, 0.2, 3);
    expect(heldout).toHaveLength(4);
    expect(train).toHaveLength(16);
    expect(new Set([...train, ...heldout].map(key))).toEqual(new Set(prompts.map(key)));
    expect(splitPrompts(prompts, 0.01, 3).heldout).toHaveLength(1);
    expect(splitPrompts(prompts, 0, 3)).toEqual({ train: expect.any(Array), heldout: [] });
    expect(splitPrompts(prompts.slice(0, 1), 0.5, 3).heldout).toHaveLength(0); // one prompt: nothing to hold out
  });

  it('is a function of (prompts, share, seed): the eval job rebuilds the PPO job’s split; another seed differs', () => {
    const a = splitPrompts(prompts, 0.25, 11);
    expect(splitPrompts(prompts, 0.25, 11)).toEqual(a);
    expect(splitPrompts(prompts, 0.25, 12).heldout.map(key)).not.toEqual(a.heldout.map(key));
    // The order is shuffled too (the PPO run's data order starts from it).
    expect(splitPrompts(prompts, 0, 11).train.map(key)).not.toEqual(prompts.map(key));
  });
});

describe('parsePromptSet', () => {
  it('keeps each prompt’s reference columns (`reference`, or `answer`), the first line’s for a duplicate', () => {
    const text = [
      JSON.stringify({ prompt: 'What is 2 + 3?', answer: 5 }),
      JSON.stringify({ prompt: 'Name the hero.', reference: { hero: 'Lily', answer: 'x' }, answer: 'ignored' }),
      JSON.stringify({ prompt: 'What is 2 + 3?', answer: 6 }),
      JSON.stringify({ prompt: 'No columns here.' }),
    ].join('\n');
    const set = parsePromptSet(text, 'set.jsonl');
    expect(set.prompts.map((p) => p[0].content)).toEqual(['What is 2 + 3?', 'Name the hero.', 'No columns here.']);
    expect(set.references).toEqual([{ answer: 5 }, { hero: 'Lily', answer: 'x' }, undefined]);
    expect(() => parsePromptSet(JSON.stringify({ prompt: 'q', reference: { a: [1] } }), 'bad.jsonl')).toThrow(/bad.jsonl:1: `reference` must be/);
  });
});
