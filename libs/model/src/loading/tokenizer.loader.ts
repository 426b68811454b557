/**
 * Loads a Hugging Face tokenizer (`tokenizer.json` + `tokenizer_config.json`) with @huggingface/tokenizers and
 * its chat template (tokenizer_config `chat_template`, or `chat_template.jinja` / `chat_template.json`) with
 * @huggingface/jinja, and applies the template the way transformers' apply_chat_template does.
 * A GGUF model without tokenizer.json gets its tokenizer from the file's metadata (tokenizerFromGguf). It holds no
 * generation defaults (generation-config.schema).
 */
import { readFile } from 'node:fs/promises';
import * as path from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { Template } from '@huggingface/jinja';
import { z } from 'zod';
import { errorReason, ModelLoadError } from './model-load.error';
import { isFile, parseJsonText, readJsonFile, readTextFile } from './checkpoint-file.io';
import type { GgufVocab } from './gguf.reader';
import { hfTokenizerFromGguf, type HfTokenizerFiles } from './gguf-tokenizer';

export interface ChatMessage {
  role: string;
  content: string;
}

export interface ChatTemplateOptions {
  /** Append the assistant turn opener so the model answers next (transformers' add_generation_prompt). */
  addGenerationPrompt?: boolean;
  /** Extra variables some templates read (tools, documents, date_string, ...). */
  variables?: Record<string, unknown>;
}

/** Special token strings a template may reference, as transformers passes them. */
export interface SpecialTokenStrings {
  bos_token: string | null;
  eos_token: string | null;
  unk_token: string | null;
  pad_token: string | null;
}

/** A compiled chat template. Parse errors surface at load time, not at the first request. */
export class ChatTemplate {
  private readonly template: Template;

  constructor(
    readonly source: string,
    private readonly specialTokens: SpecialTokenStrings,
    file: string | null = null,
  ) {
    try {
      this.template = new Template(source);
    } catch (err) {
      throw new ModelLoadError(`chat template does not parse (${errorReason(err)})`, file, { cause: err });
    }
  }

  render(messages: readonly ChatMessage[], options: ChatTemplateOptions = {}): string {
    return this.template.render({
      ...this.specialTokens,
      ...options.variables,
      messages,
      add_generation_prompt: options.addGenerationPrompt ?? false,
    });
  }
}

const tokenStringSchema = z.union([z.string(), z.looseObject({ content: z.string() })]).nullish();
const tokenizerConfigSchema = z.looseObject({
  bos_token: tokenStringSchema,
  eos_token: tokenStringSchema,
  unk_token: tokenStringSchema,
  pad_token: tokenStringSchema,
  add_bos_token: z.boolean().optional(),
  add_eos_token: z.boolean().optional(),
  model_max_length: z.number().optional(),
  chat_template: z
    .union([z.string(), z.array(z.looseObject({ name: z.string(), template: z.string() }))])
    .nullish(),
});

/**
 * The vocabulary as a grammar compiler needs it (xgrammar's TokenizerInfo): each id's token string as stored,
 * how those strings encode bytes, and which ids are special (never produced as text). One per tokenizer build,
 * shared by its users: read-only.
 */
export interface GrammarVocab {
  /** Index = token id; special added tokens are listed in `specialIds`. */
  readonly tokens: readonly string[];
  /** byte_level: GPT-2 byte-to-unicode strings; byte_fallback: SentencePiece ▁ and <0xNN>; raw: text as is. */
  readonly vocabType: 'raw' | 'byte_fallback' | 'byte_level';
  readonly specialIds: readonly number[];
}

export class ModelTokenizer {
  readonly bosTokenId: number | null;
  readonly eosTokenId: number | null;
  readonly padTokenId: number | null;
  readonly vocabSize: number;
  /** grammarVocab()'s answer once asked, shared with the copies from() makes (a hot swap reusing this build). */
  private readonly memo: { grammarVocab?: GrammarVocab } = {};

  constructor(
    private readonly tokenizer: Tokenizer,
    readonly specialTokens: SpecialTokenStrings,
    /** Null when the checkpoint ships no chat template. */
    readonly chatTemplate: ChatTemplate | null,
    /** Where the tokenizer came from, for error messages. */
    readonly dir: string,
    /** tokenizer.json's model/decoder/added_tokens, for grammarVocab(). */
    private readonly tokenizerJson: Record<string, unknown> = {},
  ) {
    const idOf = (token: string | null) => (token === null ? null : (tokenizer.token_to_id(token) ?? null));
    this.bosTokenId = idOf(specialTokens.bos_token);
    this.eosTokenId = idOf(specialTokens.eos_token);
    this.padTokenId = idOf(specialTokens.pad_token);
    this.vocabSize = tokenizer.get_vocab(true).size;
  }

  /** The same tokenizer, said to come from `dir` (loadTokenizer reusing one built from equal files). */
  from(dir: string): ModelTokenizer {
    if (dir === this.dir) return this;
    return Object.assign(Object.create(ModelTokenizer.prototype) as ModelTokenizer, this, { dir });
  }

  /** Token ids of `text`; with special tokens (the default) the post-processor adds e.g. BOS, as HF's encode. */
  encode(text: string, options: { addSpecialTokens?: boolean } = {}): number[] {
    return this.tokenizer.encode(text, { add_special_tokens: options.addSpecialTokens ?? true }).ids;
  }

  decode(ids: readonly number[], options: { skipSpecialTokens?: boolean } = {}): string {
    if (ids.length === 0) return ''; // @huggingface/tokenizers refuses an empty list
    return this.tokenizer.decode([...ids], { skip_special_tokens: options.skipSpecialTokens ?? false });
  }

  tokenToId(token: string): number | null {
    return this.tokenizer.token_to_id(token) ?? null;
  }

  idToToken(id: number): string | null {
    return this.tokenizer.id_to_token(id) ?? null;
  }

  /**
   * Every id's token text, the vocabulary's byte handling and the special ids, for the grammar compiler. Worked out
   * once per build (30–40 ms on this thread at 49k–128k ids).
   */
  grammarVocab(): GrammarVocab {
    this.memo.grammarVocab ??= this.readGrammarVocab();
    return this.memo.grammarVocab;
  }

  private readGrammarVocab(): GrammarVocab {
    const vocab = this.tokenizer.get_vocab(true);
    const tokens = new Array<string>(this.vocabSize).fill('');
    for (const [token, id] of vocab) if (id < tokens.length) tokens[id] = token;
    const added = Array.isArray(this.tokenizerJson.added_tokens) ? (this.tokenizerJson.added_tokens as unknown[]) : [];
    const specialIds = added.flatMap((t) => (isObject(t) && (t as { special?: unknown }).special === true && typeof (t as { id?: unknown }).id === 'number' ? [(t as { id: number }).id] : []));
    const decoder = JSON.stringify(this.tokenizerJson.decoder ?? null);
    const vocabType = decoder.includes('"ByteLevel"') ? 'byte_level' : decoder.includes('"ByteFallback"') ? 'byte_fallback' : 'raw';
    return { tokens, vocabType, specialIds };
  }

  /** The rendered prompt text for `messages`; throws when the checkpoint has no chat template. */
  renderChat(messages: readonly ChatMessage[], options: ChatTemplateOptions = {}): string {
    if (this.chatTemplate === null) {
      throw new ModelLoadError(
        'this model has no chat template (no chat_template in tokenizer_config.json, no chat_template.jinja); ' +
          'send a plain completion prompt instead',
        this.dir,
      );
    }
    return this.chatTemplate.render(messages, options);
  }

  /**
   * Prompt token ids for `messages`. The template already writes BOS and friends, so the rendered text is
   * tokenized without special tokens, as transformers' apply_chat_template does (no second BOS).
   */
  applyChatTemplate(messages: readonly ChatMessage[], options: ChatTemplateOptions = {}): number[] {
    return this.encode(this.renderChat(messages, options), { addSpecialTokens: false });
  }
}

export const TOKENIZER_FILE = 'tokenizer.json';
export const TOKENIZER_CONFIG_FILE = 'tokenizer_config.json';

/**
 * The tokenizers built last, with the text of the files each was built from. Every version an RL run makes keeps its
 * base's tokenizer files, and a hot swap loads the new version while the old one serves, on the same thread: building
 * the tokenizer again (JSON.parse of tokenizer.json, then @huggingface/tokenizers' tables) would stall every stream
 * for 0.1 s at 49k ids and 0.3 s at 128k. Files equal to an entry's reuse its tokenizer. Two entries: the version
 * serving and the one coming in (the policy and the reward service each hold one model).
 */
const recentTokenizers: Array<{ tokenizerText: string; configText: string | null; templateSource: string | null; tokenizer: ModelTokenizer }> = [];
const RECENT_TOKENIZERS = 2;

/** Loads `tokenizer.json`, `tokenizer_config.json` and the chat template from an HF checkpoint directory. */
export async function loadTokenizer(dir: string): Promise<ModelTokenizer> {
  const tokenizerFile = path.join(dir, TOKENIZER_FILE);
  const configFile = path.join(dir, TOKENIZER_CONFIG_FILE);
  const tokenizerText = await readTextFile(tokenizerFile);
  const configText = (await isFile(configFile)) ? await readTextFile(configFile) : null;
  const configJson = configText === null ? {} : parseJsonText(configText, configFile);
  const parsed = tokenizerConfigSchema.safeParse(configJson);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new ModelLoadError(`invalid tokenizer config (${issue.path.join('.')}: ${issue.message})`, configFile);
  }
  if (!isObject(configJson)) throw new ModelLoadError('tokenizer_config.json is not a JSON object', configFile);
  const template = await findChatTemplate(dir, parsed.data.chat_template ?? null, configFile);
  const templateSource = template?.source ?? null;
  const same = recentTokenizers.find((r) => r.tokenizerText === tokenizerText && r.configText === configText && r.templateSource === templateSource);
  if (same) return same.tokenizer.from(dir);
  const tokenizerJson = parseJsonText(tokenizerText, tokenizerFile);
  if (!isObject(tokenizerJson)) throw new ModelLoadError('tokenizer.json is not a JSON object', tokenizerFile);
  const tokenizer = buildTokenizer(tokenizerJson as Record<string, unknown>, configJson as Record<string, unknown>, parsed.data, template, dir, tokenizerFile);
  recentTokenizers.unshift({ tokenizerText, configText, templateSource, tokenizer });
  recentTokenizers.length = Math.min(recentTokenizers.length, RECENT_TOKENIZERS);
  return tokenizer;
}

/**
 * A GGUF model's tokenizer from its own metadata (gguf-tokenizer.ts), when no tokenizer.json is beside the file;
 * the chat template is the file's `tokenizer.chat_template`.
 */
export function tokenizerFromGguf(vocab: GgufVocab, file: string): ModelTokenizer {
  let files: HfTokenizerFiles;
  try {
    files = hfTokenizerFromGguf(vocab);
  } catch (err) {
    throw new ModelLoadError(errorReason(err), file, { cause: err });
  }
  const config = tokenizerConfigSchema.parse(files.tokenizerConfig);
  const template = typeof config.chat_template === 'string' ? { source: config.chat_template, file } : null;
  return buildTokenizer(files.tokenizerJson, files.tokenizerConfig, config, template, file, file);
}

function buildTokenizer(
  tokenizerJson: Record<string, unknown>,
  configJson: Record<string, unknown>,
  config: z.infer<typeof tokenizerConfigSchema>,
  template: { source: string; file: string } | null,
  dir: string,
  tokenizerFile: string,
): ModelTokenizer {
  let tokenizer: Tokenizer;
  try {
    tokenizer = new Tokenizer(withRustDigits(tokenizerJson), configJson);
  } catch (err) {
    throw new ModelLoadError(`cannot build the tokenizer (${errorReason(err)})`, tokenizerFile, { cause: err });
  }
  const tokenString = (v: z.infer<typeof tokenStringSchema>) => (v == null ? null : typeof v === 'string' ? v : v.content);
  const specialTokens: SpecialTokenStrings = {
    bos_token: tokenString(config.bos_token),
    eos_token: tokenString(config.eos_token),
    unk_token: tokenString(config.unk_token),
    pad_token: tokenString(config.pad_token),
  };
  const chatTemplate = template === null ? null : new ChatTemplate(template.source, specialTokens, template.file);
  return new ModelTokenizer(tokenizer, specialTokens, chatTemplate, dir, tokenizerJson);
}

/**
 * The Rust tokenizers' `Digits` pre-tokenizer splits on `char::is_numeric` (every \p{N}: "½", "²", "٣"), as
 * llama.cpp's regexes do; @huggingface/tokenizers' splits on the regex \d (ASCII digits only), so "4 ½" would
 * tokenize differently from transformers. Each Digits becomes the equivalent Split on \p{N}.
 */
function withRustDigits(tokenizerJson: Record<string, unknown>): Record<string, unknown> {
  const rewrite = (node: unknown): unknown => {
    if (!isObject(node)) return node;
    const n = node as Record<string, unknown>;
    if (n.type === 'Digits') {
      return { type: 'Split', pattern: { Regex: n.individual_digits === true ? '\\p{N}' : '\\p{N}+' }, behavior: 'Isolated', invert: false };
    }
    if (n.type === 'Sequence' && Array.isArray(n.pretokenizers)) return { ...n, pretokenizers: n.pretokenizers.map(rewrite) };
    return node;
  };
  const pre = rewrite(tokenizerJson.pre_tokenizer);
  return pre === tokenizerJson.pre_tokenizer ? tokenizerJson : { ...tokenizerJson, pre_tokenizer: pre };
}

/**
 * transformers' precedence: `chat_template.jinja`, then `chat_template.json`, then tokenizer_config's
 * `chat_template` (a string, or a list of named templates of which "default" is used).
 */
async function findChatTemplate(
  dir: string,
  fromConfig: string | { name: string; template: string }[] | null,
  configFile: string,
): Promise<{ source: string; file: string } | null> {
  const jinjaFile = path.join(dir, 'chat_template.jinja');
  if (await isFile(jinjaFile)) return { source: await readFile(jinjaFile, 'utf8'), file: jinjaFile };
  const jsonFile = path.join(dir, 'chat_template.json');
  if (await isFile(jsonFile)) {
    const json = z.looseObject({ chat_template: z.string() }).safeParse(await readJsonFile(jsonFile));
    if (!json.success) throw new ModelLoadError('chat_template.json has no chat_template string', jsonFile);
    return { source: json.data.chat_template, file: jsonFile };
  }
  if (fromConfig === null) return null;
  if (typeof fromConfig === 'string') return { source: fromConfig, file: configFile };
  const named = fromConfig.find((t) => t.name === 'default');
  if (named === undefined) {
    throw new ModelLoadError(
      `chat_template lists templates ${fromConfig.map((t) => `"${t.name}"`).join(', ')} but none named "default"`,
      configFile,
    );
  }
  return { source: named.template, file: configFile };
}

function isObject(v: unknown): v is object {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
