/**
 * A Hugging Face tokenizer (tokenizer.json + tokenizer_config.json, as objects) from a GGUF file's own
 * `tokenizer.ggml.*` metadata, for GGUF models served without a tokenizer.json beside them: SentencePiece
 * vocabularies (`llama`: BPE with byte fallback, merges ranked by piece score as transformers' converter does) and
 * byte-level BPE ones (`gpt2`, with the pre-tokenizer `tokenizer.ggml.pre` names). Checked against llama.cpp's
 * tokenizer test vectors. Pure; loading is tokenizer.loader.ts.
 */
import type { GgufVocab } from './gguf.reader';

/** llama.cpp's token types (llama_token_type). */
const TOKEN_TYPE = { normal: 1, unknown: 2, control: 3, userDefined: 4, unused: 5, byte: 6 } as const;

/** Pre-tokenizer split regexes of the byte-level BPE families (llama.cpp's llama-vocab.cpp, HF tokenizer.json). */
const LLAMA3_SPLIT = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const QWEN2_SPLIT = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

const byteLevel = (useRegex: boolean) => ({ type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: useRegex });
const split = (regex: string) => ({ type: 'Split', pattern: { Regex: regex }, behavior: 'Isolated', invert: false });

const DIGITS_THEN_GPT2 = { type: 'Sequence', pretokenizers: [{ type: 'Digits', individual_digits: true }, byteLevel(true)] };

const BPE_PRE_TOKENIZERS: Record<string, object> = {
  'gpt-2': byteLevel(true),
  default: byteLevel(true),
  'llama-bpe': { type: 'Sequence', pretokenizers: [split(LLAMA3_SPLIT), byteLevel(false)] },
  llama3: { type: 'Sequence', pretokenizers: [split(LLAMA3_SPLIT), byteLevel(false)] },
  qwen2: { type: 'Sequence', pretokenizers: [split(QWEN2_SPLIT), byteLevel(false)] },
  // llama.cpp gives SmolLM, StarCoder and Refact one rule: every digit alone, then GPT-2's split.
  smollm: DIGITS_THEN_GPT2,
  starcoder: DIGITS_THEN_GPT2,
  refact: DIGITS_THEN_GPT2,
};
export const SUPPORTED_GGUF_PRE_TOKENIZERS = Object.keys(BPE_PRE_TOKENIZERS);

export interface HfTokenizerFiles {
  tokenizerJson: Record<string, unknown>;
  tokenizerConfig: Record<string, unknown>;
}

/** Throws an Error naming what is not supported (the caller wraps it as a ModelLoadError). */
export function hfTokenizerFromGguf(v: GgufVocab): HfTokenizerFiles {
  if (v.model === 'llama') return sentencePiece(v);
  if (v.model === 'gpt2') return byteLevelBpe(v);
  throw new Error(`GGUF tokenizer model "${v.model}" is not supported (supported: llama, gpt2); put a tokenizer.json beside the file`);
}

const typeOf = (v: GgufVocab, id: number): number => v.tokenTypes?.[id] ?? TOKEN_TYPE.normal;

/** token → id (the first id of a token listed twice). */
function vocabMap(v: GgufVocab): Record<string, number> {
  const vocab: Record<string, number> = {};
  v.tokens.forEach((t, id) => {
    if (!(t in vocab)) vocab[t] = id;
  });
  return vocab;
}

/** The tokenizer.json fields every conversion shares; special tokens and user-defined ones are added tokens. */
function tokenizerShell(v: GgufVocab, special: (id: number) => boolean, addBosDefault: boolean) {
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: addedTokens(v, special, (id) => special(id) || typeOf(v, id) === TOKEN_TYPE.userDefined),
    post_processor: postProcessor(v, addBosDefault),
  };
}

/**
 * Phi-3's SentencePiece markers (<|user|>, <|end|>, </s>, ...) strip the whitespace after them: its tokenizer.json
 * says rstrip for every special but <unk>, <s> and <|endoftext|>, and llama.cpp sets the same attribute. Only
 * SentencePiece `phi3` vocabularies: Phi-4-mini's byte-level BPE one (also `phi3`) is built as its file says.
 */
const PHI3_KEEPS_WHITESPACE = new Set(['<unk>', '<s>', '<|endoftext|>']);
const rstripsAfter = (v: GgufVocab, content: string, special: boolean) =>
  special && v.model === 'llama' && v.architecture === 'phi3' && !PHI3_KEEPS_WHITESPACE.has(content);

function addedTokens(v: GgufVocab, isSpecial: (id: number) => boolean, isAdded: (id: number) => boolean) {
  const out: object[] = [];
  v.tokens.forEach((content, id) => {
    if (!isAdded(id)) return;
    const special = isSpecial(id);
    out.push({ id, content, single_word: false, lstrip: false, rstrip: rstripsAfter(v, content, special), normalized: !special, special });
  });
  return out;
}

function specialConfig(v: GgufVocab, addBosDefault: boolean): Record<string, unknown> {
  const tokenOf = (id: number | null) => (id === null ? null : (v.tokens[id] ?? null));
  return {
    bos_token: tokenOf(v.bosTokenId),
    eos_token: tokenOf(v.eosTokenId),
    unk_token: tokenOf(v.unkTokenId),
    pad_token: tokenOf(v.padTokenId),
    add_bos_token: v.addBosToken ?? addBosDefault,
    add_eos_token: false,
    ...(v.chatTemplate !== null ? { chat_template: v.chatTemplate } : {}),
  };
}

/** BOS before each sequence when the file says so (HF's TemplateProcessing). */
function postProcessor(v: GgufVocab, addBosDefault: boolean): object | null {
  const bos = v.bosTokenId === null ? null : v.tokens[v.bosTokenId];
  if (!(v.addBosToken ?? addBosDefault) || bos === undefined || bos === null) return null;
  return {
    type: 'TemplateProcessing',
    single: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
    pair: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: bos, type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } }],
    special_tokens: { [bos]: { id: bos, ids: [v.bosTokenId], tokens: [bos] } },
  };
}

/**
 * SentencePiece BPE as transformers' LlamaConverter builds it: merges are every split of every piece into two
 * pieces of the vocabulary, ranked by the whole piece's score (highest first), ties in id order; byte fallback;
 * spaces as `▁`, and the dummy prefix `▁` unless `tokenizer.ggml.add_space_prefix` is false (Gemma, as its
 * GemmaConverter: no Prepend normalizer, no Strip decoder).
 */
function sentencePiece(v: GgufVocab): HfTokenizerFiles {
  if (v.scores === null) throw new Error('GGUF SentencePiece vocabulary has no tokenizer.ggml.scores');
  const scores = v.scores;
  const vocab = vocabMap(v);
  const merges: Array<{ pair: [string, string]; score: number; ranks: [number, number] }> = [];
  v.tokens.forEach((piece, id) => {
    const type = typeOf(v, id);
    if (type !== TOKEN_TYPE.normal && type !== TOKEN_TYPE.userDefined) return;
    const chars = [...piece];
    const local: typeof merges = [];
    for (let i = 1; i < chars.length; i++) {
      const left = chars.slice(0, i).join('');
      const right = chars.slice(i).join('');
      if (left in vocab && right in vocab) local.push({ pair: [left, right], score: scores[id]!, ranks: [vocab[left]!, vocab[right]!] });
    }
    local.sort((a, b) => a.ranks[0] - b.ranks[0] || a.ranks[1] - b.ranks[1]);
    merges.push(...local);
  });
  // Stable: equal scores keep the vocabulary order.
  merges.sort((a, b) => b.score - a.score);
  const unk = v.unkTokenId === null ? null : (v.tokens[v.unkTokenId] ?? null);
  const special = (id: number) => {
    const type = typeOf(v, id);
    return type === TOKEN_TYPE.control || type === TOKEN_TYPE.unknown;
  };
  const prefix = v.addSpacePrefix ?? true;
  const spaces = { type: 'Replace', pattern: { String: ' ' }, content: '▁' };
  return {
    tokenizerJson: {
      ...tokenizerShell(v, special, true),
      normalizer: { type: 'Sequence', normalizers: prefix ? [{ type: 'Prepend', prepend: '▁' }, spaces] : [spaces] },
      pre_tokenizer: null,
      decoder: {
        type: 'Sequence',
        decoders: [
          { type: 'Replace', pattern: { String: '▁' }, content: ' ' },
          { type: 'ByteFallback' },
          { type: 'Fuse' },
          ...(prefix ? [{ type: 'Strip', content: ' ', start: 1, stop: 0 }] : []),
        ],
      },
      model: {
        type: 'BPE',
        dropout: null,
        unk_token: unk,
        continuing_subword_prefix: null,
        end_of_word_suffix: null,
        fuse_unk: true,
        byte_fallback: true,
        ignore_merges: false,
        vocab,
        merges: merges.map((m) => m.pair),
      },
    },
    tokenizerConfig: { ...specialConfig(v, true), legacy: true, clean_up_tokenization_spaces: false },
  };
}

function byteLevelBpe(v: GgufVocab): HfTokenizerFiles {
  if (v.merges === null) throw new Error('GGUF byte-level BPE vocabulary has no tokenizer.ggml.merges');
  const pre = v.pre ?? 'default';
  const preTokenizer = BPE_PRE_TOKENIZERS[pre];
  if (preTokenizer === undefined) {
    throw new Error(`GGUF pre-tokenizer "${pre}" is not supported (supported: ${SUPPORTED_GGUF_PRE_TOKENIZERS.join(', ')}); put a tokenizer.json beside the file`);
  }
  const vocab = vocabMap(v);
  const special = (id: number) => typeOf(v, id) === TOKEN_TYPE.control;
  return {
    tokenizerJson: {
      ...tokenizerShell(v, special, false),
      normalizer: null,
      pre_tokenizer: preTokenizer,
      decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
      model: {
        type: 'BPE',
        dropout: null,
        unk_token: null,
        continuing_subword_prefix: '',
        end_of_word_suffix: '',
        fuse_unk: false,
        byte_fallback: false,
        ignore_merges: pre === 'llama-bpe' || pre === 'llama3',
        vocab,
        merges: v.merges.map((m) => {
          const at = m.indexOf(' ');
          return [m.slice(0, at), m.slice(at + 1)];
        }),
      },
    },
    tokenizerConfig: { ...specialConfig(v, false), clean_up_tokenization_spaces: false },
  };
}
