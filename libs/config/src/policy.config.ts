/**
 * The policy service's own settings on top of the common tree: which model to serve, in what weight
 * dtype, with how many native threads, and the engine's batching and KV-cache bounds.
 */
import { z } from 'zod';
import { parseEnv, type Env } from './config.loader';
import { enumVar, intVar, stringVar } from './env.fields';
import { loadServiceConfig, type CommonConfig } from './service.config';

export interface PolicyConfig extends CommonConfig {
  policy: {
    /** A Hugging Face directory or a .gguf file; relative paths resolve against the working directory. */
    model: string;
    /** Weight storage in the engine; 'auto' = a quantized GGUF keeps each tensor's own type, else f32 (see createNativeEngine). */
    dtype: 'f32' | 'bf16' | 'q8_0' | 'q4_0' | 'q4_1' | 'q5_0' | 'q5_1' | 'q4_k' | 'q5_k' | 'q6_k' | 'q4_k_m' | 'q5_k_m' | 'auto';
    /** 0 = one per hardware core. */
    threads: number;
    /** 0 = sized from maxSeqs and the context length. */
    kvBlocks: number;
    /** K/V cache storage: f16 (half the bytes per token) or f32. */
    kvDtype: 'f16' | 'f32';
    maxBatchTokens: number;
    maxSeqs: number;
    maxWaiting: number;
    /** 0 = the model's max_position_embeddings. */
    maxModelLen: number;
    version: string;
    /** How the model writes tool calls; 'auto' = detected from its chat template (Hermes when it does not say). */
    toolCallFormat: 'auto' | 'hermes' | 'llama3_json' | 'mistral';
    /** Whether `<think>…</think>` is split off as reasoning_content; 'auto' = when the chat template mentions <think>. */
    reasoningParser: 'auto' | 'none' | 'think';
    /** At most one streamed frame of a request per this many ms (FLYWHEEL_STREAM_INTERVAL_MS); 0 = one per step. */
    streamIntervalMs: number;
  };
}

export const policyEnvSchema = z.object({
  FLYWHEEL_MODEL: stringVar('models/stories260K'),
  FLYWHEEL_MODEL_DTYPE: enumVar(['f32', 'bf16', 'q8_0', 'q4_0', 'q4_1', 'q5_0', 'q5_1', 'q4_k', 'q5_k', 'q6_k', 'q4_k_m', 'q5_k_m', 'auto'] as const, 'auto'),
  FLYWHEEL_THREADS: intVar(0, 0, 1024),
  FLYWHEEL_KV_BLOCKS: intVar(0, 0, 10_000_000),
  FLYWHEEL_KV_DTYPE: enumVar(['f16', 'f32'] as const, 'f16'),
  FLYWHEEL_MAX_BATCH_TOKENS: intVar(512, 1, 1_000_000),
  FLYWHEEL_MAX_SEQS: intVar(32, 1, 4096),
  FLYWHEEL_MAX_WAITING: intVar(256, 0, 1_000_000),
  FLYWHEEL_MAX_MODEL_LEN: intVar(0, 0, 10_000_000),
  FLYWHEEL_POLICY_VERSION: stringVar('base'),
  FLYWHEEL_TOOL_CALL_FORMAT: enumVar(['auto', 'hermes', 'llama3_json', 'mistral'] as const, 'auto'),
  FLYWHEEL_REASONING_PARSER: enumVar(['auto', 'none', 'think'] as const, 'auto'),
  FLYWHEEL_STREAM_INTERVAL_MS: intVar(0, 0, 1000),
});

export function loadPolicyConfig(env: Env): PolicyConfig {
  const p = parseEnv(policyEnvSchema, env);
  return {
    ...loadServiceConfig('policy', env),
    policy: {
      model: p.FLYWHEEL_MODEL,
      dtype: p.FLYWHEEL_MODEL_DTYPE,
      threads: p.FLYWHEEL_THREADS,
      kvBlocks: p.FLYWHEEL_KV_BLOCKS,
      kvDtype: p.FLYWHEEL_KV_DTYPE,
      maxBatchTokens: p.FLYWHEEL_MAX_BATCH_TOKENS,
      maxSeqs: p.FLYWHEEL_MAX_SEQS,
      maxWaiting: p.FLYWHEEL_MAX_WAITING,
      maxModelLen: p.FLYWHEEL_MAX_MODEL_LEN,
      version: p.FLYWHEEL_POLICY_VERSION,
      toolCallFormat: p.FLYWHEEL_TOOL_CALL_FORMAT,
      reasoningParser: p.FLYWHEEL_REASONING_PARSER,
      streamIntervalMs: p.FLYWHEEL_STREAM_INTERVAL_MS,
    },
  };
}

export const POLICY_ENV_DOCS: ReadonlyArray<{ name: string; default: string; meaning: string }> = [
  { name: 'FLYWHEEL_MODEL', default: 'models/stories260K', meaning: 'policy model: a Hugging Face Llama-family directory or a GGUF file' },
  {
    name: 'FLYWHEEL_MODEL_DTYPE',
    default: 'auto',
    meaning:
      'weight storage in the engine: f32, bf16, or a GGML type q8_0, q4_0, q4_1, q5_0, q5_1, q4_k, q5_k, q6_k (blocks times int8 activations; an f32/bf16 checkpoint, or a GGUF of another type, is quantized on load; a matrix whose rows the blocks cannot split falls back to q8_0, then f32), or llama.cpp\'s mix q4_k_m / q5_k_m (each matrix the type llama-quantize gives it: the LM head and some v/down projections Q6_K); auto = a quantized GGUF keeps every tensor in its own type (Q4_K_M stays Q4_K + Q6_K), else f32 (activations and KV cache stay f32)',
  },
  { name: 'FLYWHEEL_THREADS', default: '0 (one per core)', meaning: 'native thread-pool size of the policy engine' },
  { name: 'FLYWHEEL_KV_BLOCKS', default: '0 (auto)', meaning: 'KV-cache blocks of 16 tokens; auto = enough for FLYWHEEL_MAX_SEQS full contexts, capped at 1 GiB' },
  { name: 'FLYWHEEL_KV_DTYPE', default: 'f16', meaning: 'KV-cache storage: f16 (IEEE half, half the bytes per token; attention widens it to f32) or f32' },
  { name: 'FLYWHEEL_MAX_BATCH_TOKENS', default: '512', meaning: 'token budget of one engine step (decode tokens + prefill chunks)' },
  { name: 'FLYWHEEL_MAX_SEQS', default: '32', meaning: 'most sequences running at once' },
  { name: 'FLYWHEEL_MAX_WAITING', default: '256', meaning: 'most requests queued; beyond it the policy answers overloaded (HTTP 429)' },
  { name: 'FLYWHEEL_MAX_MODEL_LEN', default: "0 (the model's)", meaning: 'context length served (prompt + completion)' },
  { name: 'FLYWHEEL_POLICY_VERSION', default: 'base', meaning: 'policy version reported with every completion until the RL loop promotes one' },
  {
    name: 'FLYWHEEL_TOOL_CALL_FORMAT',
    default: 'auto',
    meaning: "how the model writes tool calls: hermes (<tool_call>{...}</tool_call>), llama3_json or mistral ([TOOL_CALLS]); auto = from the chat template, else hermes",
  },
  {
    name: 'FLYWHEEL_REASONING_PARSER',
    default: 'auto',
    meaning: 'think: <think>...</think> in chat output becomes reasoning_content; none: left in content; auto = think when the chat template mentions <think>',
  },
  {
    name: 'FLYWHEEL_STREAM_INTERVAL_MS',
    default: '0',
    meaning: "at most one streamed frame of a request per this many ms (every token still arrives, in order; the first token, a frame after a longer gap and the end go at once): a model that steps faster than this sends a few tokens per frame, sparing the mesh a message per token; 0 = a frame per step",
  },
];
