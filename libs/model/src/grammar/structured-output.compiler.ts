/**
 * Structured outputs for one tokenizer: turns an OutputConstraint (any JSON object, a JSON schema, tool calls in
 * the model's format) into an xgrammar grammar compiled against the vocabulary, cached by its spec, and hands
 * out one matcher per sequence as the engine's SequenceConstraint. Schemas are checked by checkJsonSchema before
 * they get here; this file does not validate requests and does not sample.
 */
import { checkJsonSchema, TOOL_CALL_SHAPES, type OutputConstraint, type ToolCallFormat } from '@flywheel/contracts';
import type { SequenceConstraint } from '../engine/engine.types';
import type { GrammarVocab } from '../loading/tokenizer.loader';
import { xgrammar, type XgCompiledGrammar, type XgGrammarCompiler, type XgGrammarMatcher, type XgTokenizerInfo } from './xgrammar.runtime';

/** Compiled grammars kept per compiler; a miss costs a compile (milliseconds for typical schemas). */
const CACHE_ENTRIES = 64;
/** JSON on one line with `, ` and `: ` between items (xgrammar's -1 = no indent): the fewest tokens, no whitespace loops. */
const ONE_LINE = -1;
const SEPARATORS: [string, string] = [', ', ': '];

class MatcherConstraint implements SequenceConstraint {
  private disposed = false;
  constructor(private readonly matcher: XgGrammarMatcher) {}
  nextMask(): Promise<Int32Array> {
    return this.matcher.getNextTokenBitmask();
  }
  accept(tokenId: number): boolean {
    return this.matcher.acceptToken(tokenId);
  }
  isTerminated(): boolean {
    return this.matcher.isTerminated();
  }
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.matcher.dispose();
  }
}

export class StructuredOutputCompiler {
  private readonly cache = new Map<string, XgCompiledGrammar>();

  private constructor(
    private readonly info: XgTokenizerInfo,
    private readonly compiler: XgGrammarCompiler,
    private readonly stopTokenIds: number[],
    readonly toolCallFormat: ToolCallFormat,
  ) {}

  /**
   * `vocabSize` is the model's (logits) size, which may exceed the tokenizer's; `stopTokenIds` end a finished
   * grammar (EOS).
   */
  static async create(vocab: GrammarVocab, options: { vocabSize: number; stopTokenIds: number[]; toolCallFormat: ToolCallFormat }): Promise<StructuredOutputCompiler> {
    const xg = xgrammar();
    const keep = new Set(TOOL_CALL_SHAPES[options.toolCallFormat].specialTokens);
    // Special tokens become empty strings, which xgrammar never matches as text; a format's own tokens stay.
    const tokens = vocab.tokens.slice();
    for (const id of vocab.specialIds) if (id < tokens.length && !keep.has(tokens[id]!)) tokens[id] = '';
    for (const id of options.stopTokenIds) if (id < tokens.length) tokens[id] = '';
    const info = await xg.TokenizerInfo.createTokenizerInfo(tokens, vocab.vocabType, false, options.vocabSize, options.stopTokenIds);
    const compiler = await xg.GrammarCompiler.createGrammarCompiler(info, true);
    return new StructuredOutputCompiler(info, compiler, options.stopTokenIds, options.toolCallFormat);
  }

  /** One matcher per sequence (choice), each at the grammar's start. The caller disposes them (the engine does). */
  async constraints(spec: OutputConstraint, n: number): Promise<SequenceConstraint[]> {
    const compiled = await this.compiled(spec);
    const xg = xgrammar();
    const out: SequenceConstraint[] = [];
    for (let i = 0; i < n; i++) out.push(new MatcherConstraint(await xg.GrammarMatcher.createGrammarMatcher(compiled, this.stopTokenIds)));
    return out;
  }

  dispose(): void {
    for (const g of this.cache.values()) g.dispose();
    this.cache.clear();
    this.compiler.dispose();
    this.info.dispose();
  }

  private async compiled(spec: OutputConstraint): Promise<XgCompiledGrammar> {
    const key = JSON.stringify(spec);
    const hit = this.cache.get(key);
    if (hit) {
      this.cache.delete(key);
      this.cache.set(key, hit);
      return hit;
    }
    const compiled = await this.compile(spec);
    this.cache.set(key, compiled);
    if (this.cache.size > CACHE_ENTRIES) {
      const [oldest, grammar] = this.cache.entries().next().value as [string, XgCompiledGrammar];
      this.cache.delete(oldest);
      grammar.dispose();
    }
    return compiled;
  }

  private async compile(spec: OutputConstraint): Promise<XgCompiledGrammar> {
    switch (spec.kind) {
      case 'json_object':
        // Any object: a JSON Schema with nothing but the type, additional properties allowed.
        return this.compiler.compileJSONSchema(JSON.stringify({ type: 'object' }), false, ONE_LINE, SEPARATORS, false);
      case 'json_schema':
        return this.compiler.compileJSONSchema(JSON.stringify(checkJsonSchema(spec.schema, 'schema')), false, ONE_LINE, SEPARATORS, spec.strict);
      case 'tool_calls': {
        // Arguments as compact JSON (a structural tag's own json_schema allows any whitespace, which small models
        // fill with endless newlines), each tool's schema as its EBNF inside the tag.
        const xg = xgrammar();
        const grammars = await Promise.all(
          spec.tools.map((t) => xg.Testings._jsonSchemaToEBNF(JSON.stringify(checkJsonSchema(t.parameters, 'parameters')), false, ONE_LINE, SEPARATORS, t.strict)),
        );
        return this.compiler.compileStructuralTag({ type: 'structural_tag', format: toolCallsFormat(spec, this.toolCallFormat, grammars) });
      }
    }
  }
}

/**
 * The structural tag of a tools request: calls of the listed functions only, each with arguments matching its
 * schema (`argumentGrammars[i]`: the EBNF of tool i's parameters).
 */
export function toolCallsFormat(spec: Extract<OutputConstraint, { kind: 'tool_calls' }>, format: ToolCallFormat, argumentGrammars: readonly string[]): Record<string, unknown> {
  const shape = TOOL_CALL_SHAPES[format];
  const tags = spec.tools.map((tool, i) => ({
    type: 'tag',
    begin: `${shape.open}{"name": ${JSON.stringify(tool.name)}, "${shape.argsKey}": `,
    content: { type: 'grammar', grammar: argumentGrammars[i] },
    end: `}${shape.close}`,
  }));
  const calls = { type: 'tags_with_separator', tags, separator: shape.separator, at_least_one: true, stop_after_first: !spec.parallel };
  if (format === 'mistral') {
    const list = { type: 'tag', begin: '[TOOL_CALLS][', content: calls, end: ']' };
    return spec.mode === 'required' ? list : { type: 'triggered_tags', triggers: [shape.trigger], tags: [list], stop_after_first: true };
  }
  if (spec.mode === 'required') return calls;
  return { type: 'triggered_tags', triggers: [shape.trigger], tags, stop_after_first: !spec.parallel };
}
