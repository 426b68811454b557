/**
 * libs/model: Llama-family checkpoints (Hugging Face directories and GGUF files, tokenizer, chat
 * template, generation defaults) and the serving engine built on the native kernels.
 */
export * from './loading';
export * from './engine';
