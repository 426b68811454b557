/**
 * The zod schema of `generation_config.json` and the model's generation defaults resolved from it, config.json
 * and the tokenizer: BOS, the set of stop ids (eos_token_id may be a list) and the sampling values the model
 * author chose. Values absent from the file stay null, so the sampler's own defaults apply; it is not a sampler.
 */
import { z } from 'zod';
import { ModelLoadError } from './model-load.error';

const tokenIdOrList = z.union([z.int().nonnegative(), z.array(z.int().nonnegative())]).nullish();

export const generationConfigSchema = z.looseObject({
  bos_token_id: tokenIdOrList,
  eos_token_id: tokenIdOrList,
  pad_token_id: tokenIdOrList,
  do_sample: z.boolean().optional(),
  temperature: z.number().nonnegative().nullish(),
  top_p: z.number().min(0).max(1).nullish(),
  top_k: z.int().nonnegative().nullish(),
  max_new_tokens: z.int().positive().nullish(),
  max_length: z.int().positive().nullish(),
  repetition_penalty: z.number().positive().nullish(),
});
export type GenerationConfigJson = z.infer<typeof generationConfigSchema>;

export interface GenerationDefaults {
  bosTokenId: number | null;
  /** Every id that ends a generation, in file order (generation_config, else config.json, else the tokenizer). */
  eosTokenIds: number[];
  padTokenId: number | null;
  doSample: boolean | null;
  temperature: number | null;
  topP: number | null;
  topK: number | null;
  maxNewTokens: number | null;
  maxLength: number | null;
  repetitionPenalty: number | null;
}

export interface GenerationFallbacks {
  /** From config.json. */
  bosTokenId: number | null;
  eosTokenIds: number[];
  padTokenId: number | null;
  /** From the tokenizer's special tokens. */
  tokenizerBosTokenId: number | null;
  tokenizerEosTokenId: number | null;
}

/** `json` is the parsed generation_config.json, or null when the checkpoint has none. */
export function resolveGenerationDefaults(
  json: unknown,
  fallbacks: GenerationFallbacks,
  file: string | null = null,
): GenerationDefaults {
  let g: GenerationConfigJson = {};
  if (json !== null) {
    const parsed = generationConfigSchema.safeParse(json);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new ModelLoadError(`invalid generation_config.json (${issue.path.join('.')}: ${issue.message})`, file);
    }
    g = parsed.data;
  }
  const list = (v: number | number[] | null | undefined) => (v == null ? [] : Array.isArray(v) ? v : [v]);
  const genEos = list(g.eos_token_id);
  const eosTokenIds = genEos.length > 0 ? genEos : fallbacks.eosTokenIds.length > 0 ? fallbacks.eosTokenIds : list(fallbacks.tokenizerEosTokenId);
  return {
    bosTokenId: list(g.bos_token_id)[0] ?? fallbacks.bosTokenId ?? fallbacks.tokenizerBosTokenId,
    eosTokenIds: [...new Set(eosTokenIds)],
    padTokenId: list(g.pad_token_id)[0] ?? fallbacks.padTokenId,
    doSample: g.do_sample ?? null,
    temperature: g.temperature ?? null,
    topP: g.top_p ?? null,
    topK: g.top_k ?? null,
    maxNewTokens: g.max_new_tokens ?? null,
    maxLength: g.max_length ?? null,
    repetitionPenalty: g.repetition_penalty ?? null,
  };
}
