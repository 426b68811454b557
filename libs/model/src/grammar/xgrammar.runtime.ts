/**
 * Loads xgrammar's WebAssembly build (@mlc-ai/web-xgrammar) in Node and types the part we use: tokenizer info,
 * the grammar compiler (JSON schema, structural tags, built-in JSON) and per-sequence matchers with token
 * bitmasks. It is not the constraint logic (json-schema.grammar.ts) and holds no state of its own.
 *
 * Why a loader: the package declares "type": "module" but ships a UMD bundle that needs CommonJS's `require`
 * (for its embedded WebAssembly), so neither `import` nor `require` loads it under Node 20. We evaluate the
 * bundle as the CommonJS module it is, with its one dynamic `import('module')` turned into `require('module')`
 * (a dynamic import fails inside Jest's VM contexts). The version is pinned exactly in package.json.
 */
import { readFileSync } from 'node:fs';
import * as path from 'node:path';

export interface XgTokenizerInfo {
  dispose(): void;
  getVocabSize(): number;
}
export interface XgCompiledGrammar {
  dispose(): void;
}
export interface XgGrammarCompiler {
  dispose(): void;
  compileJSONSchema(schema: string, anyWhitespace?: boolean, indent?: number, separators?: [string, string], strictMode?: boolean): Promise<XgCompiledGrammar>;
  compileBuiltinJSONGrammar(): Promise<XgCompiledGrammar>;
  compileStructuralTag(structuralTag: Record<string, unknown>): Promise<XgCompiledGrammar>;
}
export interface XgGrammarMatcher {
  dispose(): void;
  acceptToken(tokenId: number): boolean;
  /** Int32 words over the vocabulary: bit (id & 31) of word (id >> 5) set = the token may come next. */
  getNextTokenBitmask(): Promise<Int32Array>;
  isTerminated(): boolean;
}
export interface XgGrammar {
  dispose(): void;
}

export interface XgrammarModule {
  TokenizerInfo: {
    createTokenizerInfo(encodedVocab: string[], vocabType: 'raw' | 'byte_fallback' | 'byte_level', prependSpace: boolean, vocabSize: number, stopTokenIds: number[]): Promise<XgTokenizerInfo>;
  };
  GrammarCompiler: { createGrammarCompiler(info: XgTokenizerInfo, cacheEnabled?: boolean): Promise<XgGrammarCompiler> };
  GrammarMatcher: { createGrammarMatcher(compiled: XgCompiledGrammar, overrideStopTokens?: number[]): Promise<XgGrammarMatcher> };
  Grammar: { fromJSONSchema(schema: string, anyWhitespace?: boolean, indent?: number, separators?: [string, string], strictMode?: boolean): Promise<XgGrammar> };
  Testings: {
    isGrammarAcceptString(grammar: XgGrammar, input: string): Promise<boolean>;
    /** The EBNF xgrammar builds for a JSON schema (root rule `root`); we embed it in structural tags. */
    _jsonSchemaToEBNF(schema: string, anyWhitespace?: boolean, indent?: number, separators?: [string, string], strictMode?: boolean): Promise<string>;
  };
}

let loaded: XgrammarModule | null = null;

export function xgrammar(): XgrammarModule {
  if (loaded) return loaded;
  const file = require.resolve('@mlc-ai/web-xgrammar');
  const DYNAMIC_IMPORT = "await import('module')";
  const original = readFileSync(file, 'utf8');
  if (!original.includes(DYNAMIC_IMPORT)) throw new Error(`${file}: not the xgrammar bundle this loader knows (no ${DYNAMIC_IMPORT})`);
  const source = original.replace(DYNAMIC_IMPORT, "require('module')");
  const mod = { exports: {} as Record<string, unknown> };
  // eslint-disable-next-line @typescript-eslint/no-implied-eval -- evaluating a trusted dependency's CommonJS bundle (see the header)
  const factory = new Function('exports', 'module', 'require', '__filename', '__dirname', source) as (...args: unknown[]) => void;
  factory(mod.exports, mod, require, file, path.dirname(file));
  loaded = mod.exports as unknown as XgrammarModule;
  return loaded;
}
