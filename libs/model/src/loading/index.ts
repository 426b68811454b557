/**
 * Public API of checkpoint loading: HF directories and GGUF files → ModelSpec + f32 WeightMap (HF names and
 * layout; GGUF Q8_0 matrices also as their blocks, for the engine), tokenizer, chat template and generation
 * defaults. Nothing here touches the native addon.
 */
export { ModelLoadError } from './model-load.error';
export {
  SUPPORTED_ARCHITECTURES,
  hfModelConfigSchema,
  modelSpecFromConfig,
  parseModelConfig,
} from './model-config.schema';
export type { HfModelConfigJson, ModelConfig, SupportedArchitecture } from './model-config.schema';
export { generationConfigSchema, resolveGenerationDefaults } from './generation-config.schema';
export type { GenerationConfigJson, GenerationDefaults, GenerationFallbacks } from './generation-config.schema';
export {
  LOADABLE_SAFETENSORS_DTYPES,
  parseSafetensorsHeader,
  readSafetensorsCheckpoint,
  readSafetensorsFile,
  readSafetensorsHeader,
} from './safetensors.reader';
export type {
  LoadableSafetensorsDtype,
  LoadedTensor,
  SafetensorsHeader,
  SafetensorsTensorInfo,
} from './safetensors.reader';
export { dequantizeQ8_0, ggufToHfTensorName, permuteQkRows, readGguf, unpermuteQkRows } from './gguf.reader';
export type { GgufModel, GgufTensorDtype, GgufVocab } from './gguf.reader';
export { bf16ArrayToF32, bf16BitsToF32, f16ArrayToF32, f16BitsToF32 } from './half-float.codec';
export { ChatTemplate, ModelTokenizer, loadTokenizer } from './tokenizer.loader';
export type { ChatMessage, ChatTemplateOptions, GrammarVocab, SpecialTokenStrings } from './tokenizer.loader';
export { buildWeightMap } from './weight-map.validator';
export type { ShapedTensor, WeightLayout } from './weight-map.validator';
export { loadCheckpoint, loadModelWeights } from './checkpoint.loader';
export type { Checkpoint, CheckpointFormat, LoadCheckpointOptions, LoadedWeights, SourceDtype } from './checkpoint.loader';
export { TOKENIZER_FILES, hfConfigFor, serializeSafetensors, writeFileAtomic, writeHfCheckpoint, writeSafetensorsFile } from './safetensors.writer';
export type { HfCheckpointToWrite, TensorToWrite, WritableSafetensorsDtype } from './safetensors.writer';
export { syntheticSpmVocab, writeGguf, type GgufToWrite } from './gguf.writer';
