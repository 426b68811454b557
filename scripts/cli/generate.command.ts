/**
 * `flywheel generate`: loads a model (Hugging Face directory or GGUF) into the native engine and prints
 * the continuation of a prompt to stdout as it is generated — the text only, nothing else on stdout.
 * No mesh, no NATS: a way to try a model in one command.
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { createNativeEngine, loadCheckpoint } from '@flywheel/model';

const argsSchema = z.object({
  model: z.string({ message: '--model DIR_OR_GGUF is required' }).min(1),
  prompt: z.string({ message: '--prompt TEXT is required' }),
  maxTokens: z.coerce.number().int().positive().default(128),
  temperature: z.coerce.number().min(0).max(2).default(0),
  topP: z.coerce.number().gt(0).max(1).default(1),
  seed: z.coerce.number().int().optional(),
  // auto: a quantized GGUF keeps its own types (Q4_K_M stays Q4_K + Q6_K), anything else f32.
  dtype: z.enum(['auto', 'f32', 'bf16', 'q8_0', 'q4_0', 'q4_1', 'q5_0', 'q5_1', 'q4_k', 'q5_k', 'q6_k', 'q4_k_m', 'q5_k_m']).default('auto'),
  threads: z.coerce.number().int().positive().optional(),
});

export const GENERATE_USAGE =
  'usage: flywheel generate --model DIR_OR_GGUF --prompt TEXT [--max-tokens N] [--temperature T] [--top-p P] [--seed S] [--dtype auto|f32|bf16|q8_0|q4_0|q4_1|q5_0|q5_1|q4_k|q5_k|q6_k|q4_k_m|q5_k_m] [--threads N]';

export async function generateCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      model: { type: 'string' },
      prompt: { type: 'string' },
      'max-tokens': { type: 'string' },
      temperature: { type: 'string' },
      'top-p': { type: 'string' },
      seed: { type: 'string' },
      dtype: { type: 'string' },
      threads: { type: 'string' },
    },
    strict: true,
  });
  const parsed = argsSchema.safeParse({
    model: values.model,
    prompt: values.prompt,
    maxTokens: values['max-tokens'],
    temperature: values.temperature,
    topP: values['top-p'],
    seed: values.seed,
    dtype: values.dtype,
    threads: values.threads,
  });
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    process.stderr.write(`flywheel generate: ${issue?.path.join('.') ?? ''} ${issue?.message ?? 'invalid arguments'}\n${GENERATE_USAGE}\n`);
    return 2;
  }
  const a = parsed.data;
  const checkpoint = await loadCheckpoint(path.resolve(a.model));
  const maxLen = checkpoint.spec.maxPositionEmbeddings;
  const { engine, close } = createNativeEngine(checkpoint, { numBlocks: Math.ceil(maxLen / 16) + 1, dtype: a.dtype, threads: a.threads, maxModelLen: maxLen });
  try {
    const promptIds = checkpoint.tokenizer.encode(a.prompt, { addSpecialTokens: true });
    const events = engine.generate({
      requestId: 'cli',
      promptTokenIds: promptIds,
      maxTokens: Math.min(a.maxTokens, maxLen - promptIds.length),
      n: 1,
      stop: [],
      stopTokenIds: [],
      sampling: {
        temperature: a.temperature,
        topP: a.topP,
        topK: 0,
        seed: a.seed ?? null,
        presencePenalty: 0,
        frequencyPenalty: 0,
        logitBias: new Map(),
        logprobs: false,
        topLogprobs: 0,
      },
    });
    for await (const ev of events) process.stdout.write(ev.textDelta);
    process.stdout.write('\n');
  } finally {
    await close();
  }
  return 0;
}
