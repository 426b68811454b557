/**
 * libs/model: Llama-family checkpoints (Hugging Face directories and GGUF files, tokenizer, chat template,
 * generation defaults; the HF checkpoint writer), the serving engine built on the native kernels, and frozen
 * scoring (reward models). Training lives in @flywheel/train.
 */
export * from './loading';
export * from './engine';
export * from './scoring';
export * from './grammar';
export * from './chat';
