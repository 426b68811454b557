/**
 * Loads a servable checkpoint: a Hugging Face directory (config.json, safetensors, tokenizer, generation
 * config) or a llama.cpp `.gguf` file (an HF tokenizer beside it or in `tokenizerDir`, else the file's own), into one
 * `Checkpoint` of ModelSpec, f32 WeightMap in HF names/layout (and for the engine the same weights with GGUF Q8_0
 * matrices kept as blocks; Gemma's norm weights as 1 + w from either source), tokenizer, chat template and generation
 * defaults.
 * It does not upload weights to the native addon or pick a dtype for them; the engine does.
 */
import { stat } from 'node:fs/promises';
import * as path from 'node:path';
import { QUANT_BLOCKS } from '@flywheel/kernels';
import type { QuantType } from '@flywheel/kernels';
import type { ModelSpec, ServingWeightMap, WeightMap } from '@flywheel/kernels';
import { isFile, readJsonFile } from './checkpoint-file.io';
import { resolveGenerationDefaults } from './generation-config.schema';
import type { GenerationDefaults } from './generation-config.schema';
import { readGguf } from './gguf.reader';
import type { GgufVocab } from './gguf.reader';
import { parseModelConfig } from './model-config.schema';
import type { ModelConfig, SupportedArchitecture } from './model-config.schema';
import { errorReason, ModelLoadError } from './model-load.error';
import { readSafetensorsCheckpoint } from './safetensors.reader';
import type { LoadableSafetensorsDtype } from './safetensors.reader';
import { ChatTemplate, loadTokenizer, tokenizerFromGguf, TOKENIZER_FILE } from './tokenizer.loader';
import type { ModelTokenizer } from './tokenizer.loader';
import { buildWeightMap } from './weight-map.validator';
import { splitFusedProjections } from './fused-projections';
import { addNormWeightOffset } from './gemma-norms';

/** On-disk dtype of the weights before widening to f32. */
export type SourceDtype = 'f32' | 'f16' | 'bf16' | QuantType;

export type CheckpointFormat = 'hf' | 'gguf';

const SAFETENSORS_DTYPES: Record<LoadableSafetensorsDtype, SourceDtype> = { F32: 'f32', F16: 'f16', BF16: 'bf16' };

export interface LoadedWeights {
  /** Defaults to the directory name, or the GGUF file name without `.gguf`. */
  id: string;
  format: CheckpointFormat;
  /** The directory or .gguf file given. */
  path: string;
  architecture: SupportedArchitecture;
  spec: ModelSpec;
  /** Every tensor as f32 (training, scoring); GGUF Q8_0 tensors are widened when first read. */
  weights: WeightMap;
  /** What the serving engine takes: `weights`, except that GGUF Q8_0 matrices stay Q8_0 blocks (never widened). */
  servingWeights: ServingWeightMap;
  /** The dtype that held the most parameters on disk (mixed files report their majority). */
  sourceDtype: SourceDtype;
  /** Outputs of `score.weight` for LlamaForSequenceClassification, else null. */
  numLabels: number | null;
  /** Parsed config.json (HF directories only). */
  config: ModelConfig | null;
  /** Raw tokenizer.ggml.* metadata (GGUF only). */
  ggufVocab: GgufVocab | null;
}

export interface Checkpoint extends LoadedWeights {
  tokenizer: ModelTokenizer;
  /** Null when neither tokenizer files nor GGUF metadata carry a chat template. */
  chatTemplate: ChatTemplate | null;
  generation: GenerationDefaults;
}

export interface LoadCheckpointOptions {
  id?: string;
  /**
   * Where tokenizer.json, tokenizer_config.json and generation_config.json live. For an HF directory it defaults
   * to the directory; for a GGUF file to the file's folder (without a tokenizer.json there, the file's vocabulary).
   */
  tokenizerDir?: string;
}

/** Spec, weights and provenance only: for tests, conversions and tools that bring their own tokens. */
export async function loadModelWeights(pathOrGguf: string, options: { id?: string } = {}): Promise<LoadedWeights> {
  const kind = await detectFormat(pathOrGguf);
  return kind === 'gguf' ? loadGgufWeights(pathOrGguf, options.id) : loadHfWeights(pathOrGguf, options.id);
}

/** Everything the engine needs to serve a model. */
export async function loadCheckpoint(pathOrGguf: string, options: LoadCheckpointOptions = {}): Promise<Checkpoint> {
  const loaded = await loadModelWeights(pathOrGguf, { id: options.id });
  const tokenizerDir = options.tokenizerDir ?? (loaded.format === 'gguf' ? path.dirname(pathOrGguf) : pathOrGguf);
  const besideFile = await isFile(path.join(tokenizerDir, TOKENIZER_FILE));
  let tokenizer: ModelTokenizer;
  if (besideFile) {
    // tokenizer.json beside a GGUF file wins over the file's own vocabulary.
    tokenizer = await loadTokenizer(tokenizerDir);
  } else if (loaded.format === 'gguf' && loaded.ggufVocab) {
    tokenizer = tokenizerFromGguf(loaded.ggufVocab, pathOrGguf);
  } else {
    throw new ModelLoadError(
      loaded.format === 'gguf'
        ? `no ${TOKENIZER_FILE} for ${path.basename(pathOrGguf)} and no tokenizer in the file's metadata; put ${TOKENIZER_FILE} ` +
            `(+ tokenizer_config.json) beside the file or pass tokenizerDir`
        : `no ${TOKENIZER_FILE} in the checkpoint`,
      tokenizerDir,
    );
  }
  if (tokenizer.vocabSize > loaded.spec.vocabSize) {
    throw new ModelLoadError(
      `tokenizer has ${tokenizer.vocabSize} tokens but the model's vocab_size is ${loaded.spec.vocabSize}`,
      tokenizerDir,
    );
  }

  let chatTemplate = tokenizer.chatTemplate;
  const ggufTemplate = loaded.ggufVocab?.chatTemplate ?? null;
  if (chatTemplate === null && ggufTemplate !== null) {
    chatTemplate = new ChatTemplate(ggufTemplate, tokenizer.specialTokens, pathOrGguf);
  }

  const generationFile = path.join(tokenizerDir, 'generation_config.json');
  const generationJson = (await isFile(generationFile)) ? await readJsonFile(generationFile) : null;
  const fromModel = loaded.config ?? {
    bosTokenId: loaded.ggufVocab?.bosTokenId ?? null,
    eosTokenIds: loaded.ggufVocab?.eosTokenId != null ? [loaded.ggufVocab.eosTokenId] : [],
    padTokenId: loaded.ggufVocab?.padTokenId ?? null,
  };
  const generation = resolveGenerationDefaults(
    generationJson,
    {
      bosTokenId: fromModel.bosTokenId,
      eosTokenIds: fromModel.eosTokenIds,
      padTokenId: fromModel.padTokenId,
      tokenizerBosTokenId: tokenizer.bosTokenId,
      tokenizerEosTokenId: tokenizer.eosTokenId,
    },
    generationFile,
  );
  if (generation.eosTokenIds.length === 0) {
    throw new ModelLoadError('no end-of-sequence token in generation_config.json, config.json or the tokenizer', tokenizerDir);
  }
  return { ...loaded, tokenizer, chatTemplate, generation };
}

async function detectFormat(p: string): Promise<CheckpointFormat> {
  let isDir: boolean;
  try {
    isDir = (await stat(p)).isDirectory();
  } catch (err) {
    throw new ModelLoadError(`checkpoint not found (${errorReason(err)})`, p);
  }
  if (isDir) return 'hf';
  if (p.toLowerCase().endsWith('.gguf')) return 'gguf';
  throw new ModelLoadError('expected a Hugging Face checkpoint directory or a .gguf file', p);
}

async function loadHfWeights(dir: string, id: string | undefined): Promise<LoadedWeights> {
  const configFile = path.join(dir, 'config.json');
  const config = parseModelConfig(await readJsonFile(configFile), configFile);
  const stored = await readSafetensorsCheckpoint(dir);
  // Phi-3 stores q/k/v and gate/up fused; the engine and the trainer take them apart (row views, no copies).
  const split = config.architecture.startsWith('Phi3') ? splitFusedProjections(stored, config.spec, dir) : stored;
  // Gemma stores its norm weights as w for a (1 + w) scale; the engine and the trainer hold 1 + w (as GGUF files do).
  const tensors = addNormWeightOffset(split, config.spec);
  const weights = buildWeightMap(tensors, { spec: config.spec, scoreLabels: config.numLabels }, dir);
  return {
    id: id ?? path.basename(path.resolve(dir)),
    format: 'hf',
    path: dir,
    architecture: config.architecture,
    spec: config.spec,
    weights,
    servingWeights: weights,
    sourceDtype: majorityDtype(
      [...tensors].filter(([name]) => weights.has(name)).map(([, t]) => [SAFETENSORS_DTYPES[t.sourceDtype], t.data.length]),
    ),
    numLabels: config.numLabels,
    config,
    ggufVocab: null,
  };
}

async function loadGgufWeights(file: string, id: string | undefined): Promise<LoadedWeights> {
  const model = await readGguf(file);
  return {
    id: id ?? path.basename(file).replace(/\.gguf$/i, ''),
    format: 'gguf',
    path: file,
    architecture: model.architecture,
    spec: model.spec,
    weights: model.weights,
    servingWeights: model.servingWeights,
    sourceDtype: majorityDtype([...model.tensorDtypes].map(([name, dtype]) => [dtype, elementCount(model.servingWeights, name)])),
    numLabels: null,
    config: null,
    ggufVocab: model.vocab,
  };
}

/** Elements of one tensor, without widening a Q8_0 one. */
function elementCount(weights: ServingWeightMap, name: string): number {
  const t = weights.get(name);
  if (t === undefined) return 0;
  return t instanceof Float32Array ? t.length : (t.blocks.length / QUANT_BLOCKS[t.dtype].bytes) * QUANT_BLOCKS[t.dtype].elems;
}

function majorityDtype(entries: [SourceDtype, number][]): SourceDtype {
  const counts = new Map<SourceDtype, number>();
  for (const [dtype, n] of entries) counts.set(dtype, (counts.get(dtype) ?? 0) + n);
  let best: SourceDtype = 'f32';
  let bestCount = -1;
  for (const [dtype, n] of counts) {
    if (n > bestCount) [best, bestCount] = [dtype, n];
  }
  return best;
}
