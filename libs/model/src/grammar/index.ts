/**
 * Structured outputs: JSON-schema, JSON-object and tool-call grammars compiled by xgrammar (WebAssembly) against a
 * model's vocabulary, as per-sequence constraints the engine masks its sampling with.
 */
export { StructuredOutputCompiler, toolCallsFormat } from './structured-output.compiler';
export { xgrammar } from './xgrammar.runtime';
