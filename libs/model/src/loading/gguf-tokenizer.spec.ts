/**
 * Tokenizers built from GGUF metadata: llama.cpp's own test vectors (47 strings each: spaces, tabs, newlines,
 * digits, CJK, emoji) for two SentencePiece (Llama, Phi-3) and two byte-level BPE vocabularies (GPT-2, StarCoder's
 * digit-splitting rule that SmolLM files name), and stories260K.gguf served without a
 * tokenizer.json: the same ids and text as its Hugging Face tokenizer, and the golden greedy continuation.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { loadCheckpoint } from './checkpoint.loader';
import { readGgufVocab } from './gguf.reader';
import { hfTokenizerFromGguf } from './gguf-tokenizer';
import { committedModelDir, FIXTURES_DIR, STORIES_GGUF } from './model-files.testing';
import { loadTokenizer, tokenizerFromGguf } from './tokenizer.loader';

// Parsing a 50k-token GGUF header and building its tokenizer takes well under a second alone, much more on a loaded CI box.
jest.setTimeout(60_000);

const VECTORS = path.join(FIXTURES_DIR, 'tokenizers');

// Phi-3's SentencePiece vocabulary (32,064 tokens with its chat markers); StarCoder's BPE carries the pre-tokenizer
// llama.cpp shares with SmolLM (each digit alone), so it checks the rule SmolLM GGUF files name.
describe.each(['ggml-vocab-llama-spm.gguf', 'ggml-vocab-phi-3.gguf', 'ggml-vocab-gpt-2.gguf', 'ggml-vocab-starcoder.gguf'])("llama.cpp's test vectors: %s", (file) => {
  it('encodes all 47 strings exactly as llama.cpp does, and decodes them back', async () => {
    const vocab = (await readGgufVocab(path.join(VECTORS, file)))!;
    const tok = tokenizerFromGguf(vocab, file);
    const inputs = readFileSync(path.join(VECTORS, `${file}.inp`), 'utf8').split('\n__ggml_vocab_test__\n');
    const outputs = readFileSync(path.join(VECTORS, `${file}.out`), 'utf8').split('\n');
    expect(inputs).toHaveLength(47);
    inputs.forEach((text, i) => {
      const want = outputs[i]!.trim() === '' ? [] : outputs[i]!.trim().split(/\s+/).map(Number);
      const ids = tok.encode(text, { addSpecialTokens: false });
      expect([i, ids]).toEqual([i, want]);
      if (vocab.model === 'gpt2') expect(tok.decode(ids)).toBe(text);
    });
  });
});

describe('GGUF tokenizers', () => {
  it("Phi-3's chat markers from the file are special tokens that eat the whitespace after them, as its tokenizer.json and llama.cpp do", async () => {
    const file = path.join(VECTORS, 'ggml-vocab-phi-3.gguf');
    const vocab = (await readGgufVocab(file))!;
    expect(vocab.architecture).toBe('phi3');
    const tok = tokenizerFromGguf(vocab, file);
    const hi = tok.encode('Hi', { addSpecialTokens: false });
    expect(tok.encode('<|user|>\nHi<|end|>\n<|assistant|>', { addSpecialTokens: false })).toEqual([32010, ...hi, 32007, 32001]);
    // <|endoftext|> keeps it, as do markers of a vocabulary that is not Phi-3's.
    expect(tok.encode('<|endoftext|>\nHi', { addSpecialTokens: false }).slice(0, 2)).toEqual([32000, 29871]);
    const plain = tokenizerFromGguf({ ...vocab, architecture: 'llama' }, file);
    expect(plain.encode('<|user|>\nHi', { addSpecialTokens: false }).slice(0, 2)).toEqual([32010, 29871]);
  });

  it('stories260K.gguf without a tokenizer.json: the same ids and text as its Hugging Face tokenizer', async () => {
    const fromFile = tokenizerFromGguf((await readGgufVocab(STORIES_GGUF))!, STORIES_GGUF);
    const hf = await loadTokenizer(committedModelDir());
    for (const text of ['Once upon a time', 'Lily and her dog went to the park.', '  two  spaces\nand a line', 'héllo 😀 123']) {
      const ids = hf.encode(text);
      expect(fromFile.encode(text)).toEqual(ids);
      expect(fromFile.decode(ids, { skipSpecialTokens: true })).toBe(hf.decode(ids, { skipSpecialTokens: true }));
    }
    expect(fromFile.bosTokenId).toBe(1);
    expect(fromFile.eosTokenId).toBe(2);
  });

  it('loadCheckpoint serves a GGUF with its own tokenizer when none is beside it; one beside it wins', async () => {
    const ck = await loadCheckpoint(STORIES_GGUF);
    expect(ck.tokenizer.encode('Once upon a time')).toEqual([1, 403, 407, 261, 378]);
    expect(ck.generation.eosTokenIds).toEqual([2]);
    const withDir = await loadCheckpoint(STORIES_GGUF, { tokenizerDir: committedModelDir() });
    expect(withDir.tokenizer.dir).toBe(committedModelDir());
  });

  it("follows Gemma's conventions: no dummy prefix (add_space_prefix false), <start_of_turn> / <end_of_turn> as specials, BOS 2", () => {
    // A Gemma-shaped SentencePiece vocabulary as convert_hf_to_gguf.py writes one: <pad> <eos> <bos> <unk>, the turn
    // markers as control tokens (tokenizer_config marks them special), byte pieces, then pieces scored by merge rank.
    const pieces = ['▁', 'h', 'i', 'u', 's', 'e', 'r', 'hi', '▁hi', 'us', 'er', 'user', '\n'];
    const hex = (b: number) => `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`;
    const tokens = ['<pad>', '<eos>', '<bos>', '<unk>', '<start_of_turn>', '<end_of_turn>', ...Array.from({ length: 256 }, (_, b) => hex(b)), ...pieces];
    const gemma = {
      model: 'llama', pre: 'default', tokens,
      scores: tokens.map((_, i) => (i < 262 ? 0 : -(i - 262))),
      tokenTypes: tokens.map((_, i) => (i === 3 ? 2 : i < 6 ? 3 : i < 262 ? 6 : 1)),
      merges: null, bosTokenId: 2, eosTokenId: 1, unkTokenId: 3, padTokenId: 0, addBosToken: true, chatTemplate: null,
    };
    const id = (t: string) => tokens.indexOf(t);
    const tok = tokenizerFromGguf({ ...gemma, addSpacePrefix: false }, 'gemma.gguf');
    expect(tok.encode('hi')).toEqual([2, id('hi')]);
    expect(tok.encode(' hi', { addSpecialTokens: false })).toEqual([id('▁hi')]);
    expect(tok.encode('<start_of_turn>user\nhi<end_of_turn>', { addSpecialTokens: false })).toEqual([4, id('user'), id('\n'), id('hi'), 5]);
    expect(tok.decode([id('▁hi'), id('user')])).toBe(' hiuser');
    expect(tok.decode([2, 4, id('user'), 5], { skipSpecialTokens: true })).toBe('user');
    expect(tok.bosTokenId).toBe(2);
    expect(tok.eosTokenId).toBe(1);
    // The same vocabulary with llama.cpp's default (a dummy prefix) tokenizes as Llama's does.
    expect(tokenizerFromGguf(gemma, 'llama.gguf').encode('hi', { addSpecialTokens: false })).toEqual([id('▁hi')]);
  });

  it('refuses what it cannot convert, naming it', () => {
    const base = { tokens: ['a'], scores: null, tokenTypes: null, merges: null, bosTokenId: null, eosTokenId: null, unkTokenId: null, padTokenId: null, addBosToken: null, chatTemplate: null };
    expect(() => hfTokenizerFromGguf({ ...base, model: 'rwkv', pre: null })).toThrow(/"rwkv" is not supported/);
    expect(() => hfTokenizerFromGguf({ ...base, model: 'gpt2', pre: 'exotic', merges: [] })).toThrow(/pre-tokenizer "exotic" is not supported/);
    expect(() => hfTokenizerFromGguf({ ...base, model: 'llama', pre: null })).toThrow(/no tokenizer.ggml.scores/);
  });
});
