import { ThinkSplitter } from './reasoning.splitter';

/** Feeds `text` in pieces of `size` and joins what comes out. */
function split(text: string, startsOpen: boolean, size: number) {
  const s = new ThinkSplitter(startsOpen);
  const out = { reasoning: '', content: '' };
  for (let i = 0; i < text.length; i += size) {
    const step = s.push(text.slice(i, i + size));
    out.reasoning += step.reasoning;
    out.content += step.content;
  }
  const last = s.end();
  return { reasoning: out.reasoning + last.reasoning, content: out.content + last.content };
}

describe('ThinkSplitter', () => {
  it.each([1, 2, 5, 100])('Qwen3 style (the output opens <think>), %i characters at a time', (size) => {
    expect(split('<think>\nLet me see: 2+2.\n</think>\n\nIt is 4.', false, size)).toEqual({ reasoning: '\nLet me see: 2+2.\n', content: 'It is 4.' });
  });

  it.each([1, 3, 100])('R1 style (the prompt opened the block), %i characters at a time', (size) => {
    expect(split('hmm, <b>x</b>\n</think>\nDone', true, size)).toEqual({ reasoning: 'hmm, <b>x</b>\n', content: 'Done' });
  });

  it('no think block: everything is content, a lone < or <th is not held forever', () => {
    expect(split('Hello <there>', false, 1)).toEqual({ reasoning: '', content: 'Hello <there>' });
    expect(split('<th', false, 1)).toEqual({ reasoning: '', content: '<th' });
  });

  it('thinking cut short (max_tokens): all of it is reasoning, a partial closing tag included', () => {
    expect(split('<think>still going </thi', false, 4)).toEqual({ reasoning: 'still going </thi', content: '' });
  });
});
