/**
 * Incremental detokenization and stop strings with a real byte-fallback vocab table: multi-byte characters
 * and stop strings split across tokens, leading-space stripping, held-back text.
 */
import { IncrementalDetokenizer, StopStringMatcher } from './detokenizer';
import { VocabDecoder } from './testing/vocab-decoder.fixture';

// A tiny real byte-fallback vocab: 日 = E6 97 A5, 😀 = F0 9F 98 80.
const PIECES = ['<unk>', '<s>', '</s>', '<0xE6>', '<0x97>', '<0xA5>', '▁Hello', '▁world', '!', '▁St', 'OP', '▁there', '<0xF0>', '<0x9F>', '<0x98>', '<0x80>', 'a', '▁'];
const decoder = new VocabDecoder(PIECES, new Set([0, 1, 2]));

function stream(prompt: number[], out: number[]): string[] {
  const d = new IncrementalDetokenizer(decoder, prompt);
  const deltas = out.map((id) => d.push(id));
  deltas.push(d.flush());
  return deltas;
}

describe('IncrementalDetokenizer', () => {
  it('emits a multi-byte character only once all its byte tokens arrived', () => {
    expect(stream([1], [6, 3, 4, 5, 12, 13, 14, 15, 8])).toEqual(['Hello', '', '', '日', '', '', '', '😀', '!', '']);
  });

  it('keeps the leading space of the first output token after a prompt (strip only at text start)', () => {
    expect(stream([1, 6], [7, 11])).toEqual([' world', ' there', '']);
    expect(stream([1], [7, 11])).toEqual(['world', ' there', '']);
  });

  it('concatenated deltas equal decoding everything, and no delta holds half a character', () => {
    const groups = [[6], [7], [8], [3, 4, 5], [12, 13, 14, 15], [17], [16], [9], [2]];
    let seed = 1;
    for (let trial = 0; trial < 200; trial++) {
      const out: number[] = [];
      for (let g = 0; g < 12; g++) {
        seed = (Math.imul(seed, 48271) + 11) >>> 0;
        out.push(...groups[seed % groups.length]!);
      }
      const prompt = [1, 6];
      const deltas = stream(prompt, out);
      for (const d of deltas) expect(d).not.toContain('\uFFFD');
      expect(deltas.join('')).toBe(decoder.decode([...prompt, ...out]).slice(decoder.decode(prompt).length));
    }
  });

  it('flushes an incomplete trailing character as U+FFFD, like decoding everything', () => {
    expect(stream([1], [6, 3, 4])).toEqual(['Hello', '', '', '\uFFFD']);
  });
});

describe('StopStringMatcher', () => {
  function run(stops: string[], deltas: string[]): { emitted: string[]; stoppedAt: number; text: string } {
    const m = new StopStringMatcher(stops);
    const emitted: string[] = [];
    let stoppedAt = -1;
    for (const [i, d] of deltas.entries()) {
      const r = m.add(d);
      emitted.push(r.emit);
      if (r.stopped) {
        stoppedAt = i;
        break;
      }
    }
    if (stoppedAt < 0) emitted.push(m.flush());
    return { emitted, stoppedAt, text: m.fullText };
  }

  it('matches a stop string split across tokens and truncates before it', () => {
    // Detokenized deltas of tokens [▁Hello, ▁St, OP, !].
    const r = run(['StOP'], ['Hello', ' St', 'OP', '!']);
    expect(r.emitted).toEqual(['Hello', ' ', '']);
    expect(r.stoppedAt).toBe(2);
    expect(r.text).toBe('Hello ');
  });

  it('releases held text when the would-be stop string does not continue', () => {
    const r = run(['StOP'], ['Hello', ' St', 'a', '!']);
    expect(r.emitted).toEqual(['Hello', ' ', 'Sta', '!', '']);
    expect(r.emitted.join('')).toBe('Hello Sta!');
  });

  it('releases held text at the end of output', () => {
    expect(run(['StOP'], ['Hello St']).emitted).toEqual(['Hello ', 'St']);
  });

  it('picks the earliest of several stop strings, also inside one delta', () => {
    const r = run(['world', 'lo w', 'x'], ['Hello world']);
    expect(r.text).toBe('Hel');
    expect(r.emitted).toEqual(['Hel']);
  });

  it('finds stop strings across multi-byte tokens fed through the detokenizer', () => {
    const d = new IncrementalDetokenizer(decoder, [1]);
    const m = new StopStringMatcher(['日!']);
    const out: string[] = [];
    let stopped = false;
    for (const id of [6, 3, 4, 5, 8, 7]) {
      const r = m.add(d.push(id));
      out.push(r.emit);
      if ((stopped = r.stopped)) break;
    }
    expect(stopped).toBe(true);
    expect(out.join('')).toBe('Hello');
    expect(m.fullText).toBe('Hello');
  });
});
