/**
 * libs/model: Llama-family checkpoints (Hugging Face directories and GGUF files, tokenizer, chat
 * template, generation defaults), the serving engine built on the native kernels, and the SFT loop.
 */
export * from './loading';
export * from './engine';
export * from './training';
