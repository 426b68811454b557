/**
 * Structured outputs end to end inside the engine: the real stories260K checkpoint on the native kernels,
 * sampling at temperature 1 under xgrammar masks, every output checked by an independent validator (Ajv).
 * Also the keyword list of checkJsonSchema against what the grammar really enforces.
 */
import Ajv from 'ajv';
import { checkJsonSchema, JsonSchemaSupportError, type OutputConstraint } from '@flywheel/contracts';
import { DEFAULT_SAMPLING } from '../engine/engine';
import { createNativeEngine, type NativeEngine } from '../engine/engine.factory';
import type { GenerateRequest, TokenEvent } from '../engine/engine.types';
import { loadCheckpoint, type Checkpoint } from '../loading';
import { committedModelDir } from '../loading/model-files.testing';
import { StructuredOutputCompiler } from './structured-output.compiler';
import { xgrammar } from './xgrammar.runtime';

// Real checkpoint, native engine, many sampled outputs: seconds alone, more on a loaded CI box.
jest.setTimeout(60_000);

const PERSON = {
  type: 'object',
  properties: {
    name: { type: 'string', minLength: 1, maxLength: 12 },
    age: { type: 'integer', minimum: 0, maximum: 120 },
    pet: { enum: ['cat', 'dog', null] },
    tags: { type: 'array', items: { type: 'string', maxLength: 6 }, maxItems: 3 },
    home: { $ref: '#/$defs/place' },
  },
  required: ['name', 'age', 'pet', 'home'],
  additionalProperties: false,
  $defs: { place: { anyOf: [{ type: 'object', properties: { city: { type: 'string', maxLength: 8 } }, required: ['city'] }, { const: 'nowhere' }] } },
};

async function collect(stream: AsyncIterable<TokenEvent>): Promise<{ texts: string[]; finish: string[] }> {
  const texts: string[] = [];
  const finish: string[] = [];
  for await (const e of stream) {
    texts[e.choiceIndex] = (texts[e.choiceIndex] ?? '') + e.textDelta;
    if (e.finishReason) finish[e.choiceIndex] = e.finishReason;
  }
  return { texts, finish };
}

describe('structured outputs on stories260K (native engine, xgrammar masks)', () => {
  let ckpt: Checkpoint;
  let native: NativeEngine;
  let compiler: StructuredOutputCompiler;
  const prompt = [1, 403, 407, 261, 378];
  const request = (requestId: string, seed: number, n: number, extra: Partial<GenerateRequest> = {}): GenerateRequest => ({
    requestId,
    promptTokenIds: prompt,
    maxTokens: 300,
    n,
    stop: [],
    stopTokenIds: [],
    sampling: { ...DEFAULT_SAMPLING, temperature: 1, seed },
    ...extra,
  });

  beforeAll(async () => {
    ckpt = await loadCheckpoint(committedModelDir());
    native = createNativeEngine(ckpt, { numBlocks: 256, blockSize: 16, threads: 1 });
    compiler = await StructuredOutputCompiler.create(ckpt.tokenizer.grammarVocab(), {
      vocabSize: ckpt.spec.vocabSize,
      stopTokenIds: ckpt.generation.eosTokenIds,
      toolCallFormat: 'hermes',
    });
  });
  afterAll(async () => {
    await native.close();
    compiler.dispose();
  });

  it('every output of a strict schema parses and validates (12 seeds × 4 choices at temperature 1)', async () => {
    const validate = new Ajv().compile(PERSON);
    const spec: OutputConstraint = { kind: 'json_schema', schema: PERSON, strict: true };
    const runs = await Promise.all(
      Array.from({ length: 12 }, async (_, seed) => collect(native.engine.generate(request(`schema-${seed}`, seed, 4, { constraints: await compiler.constraints(spec, 4) })))),
    );
    const outputs = runs.flatMap((r) => r.texts);
    expect(outputs).toHaveLength(48);
    for (const text of outputs) {
      const value: unknown = JSON.parse(text);
      expect(validate(value)).toBe(true);
    }
    expect(runs.flatMap((r) => r.finish).every((f) => f === 'stop')).toBe(true);
    // Sampling, not one fixed answer: the tiny model writes different people.
    expect(new Set(outputs).size).toBeGreaterThan(10);
  });

  it('json_object yields a JSON object; an unconstrained request in the same batch is untouched', async () => {
    const free = request('free-solo', 7, 1, { maxTokens: 40 });
    const solo = await collect(native.engine.generate(free));
    const [constrained, together] = await Promise.all([
      collect(native.engine.generate(request('object', 3, 2, { maxTokens: 200, constraints: await compiler.constraints({ kind: 'json_object' }, 2) }))),
      collect(native.engine.generate({ ...free, requestId: 'free-batched' })),
    ]);
    for (const [i, text] of constrained.texts.entries()) {
      // The tiny model, free to write any key, writes a story into the first one: it runs out of tokens there.
      expect(text.startsWith('{')).toBe(true);
      if (constrained.finish[i] !== 'stop') continue;
      const value: unknown = JSON.parse(text);
      expect(typeof value === 'object' && value !== null && !Array.isArray(value)).toBe(true);
    }
    expect(together.texts).toEqual(solo.texts);
  });

  it('tool_calls required: Hermes calls of the listed functions with schema-valid arguments', async () => {
    const weather = { type: 'object', properties: { city: { type: 'string', maxLength: 10 }, unit: { enum: ['c', 'f'] } }, required: ['city', 'unit'], additionalProperties: false };
    const spec: OutputConstraint = {
      kind: 'tool_calls',
      mode: 'required',
      parallel: false,
      tools: [
        { name: 'get_weather', parameters: weather, strict: false },
        { name: 'get_time', parameters: { type: 'object', properties: {}, additionalProperties: false }, strict: false },
      ],
    };
    const validateWeather = new Ajv().compile(weather);
    const run = await collect(native.engine.generate(request('tools', 11, 6, { constraints: await compiler.constraints(spec, 6) })));
    for (const text of run.texts) {
      const m = /^<tool_call>\n(.*)\n<\/tool_call>$/s.exec(text);
      expect(m).not.toBeNull();
      const call = JSON.parse(m![1]!) as { name: string; arguments: unknown };
      expect(['get_weather', 'get_time']).toContain(call.name);
      if (call.name === 'get_weather') expect(validateWeather(call.arguments)).toBe(true);
      else expect(call.arguments).toEqual({});
    }
  });

  it.each([
    ['llama3_json', /^\{"name": "get_weather", "parameters": (.*)\}$/s],
    ['mistral', /^\[TOOL_CALLS\]\[\{"name": "get_weather", "arguments": (.*)\}\]$/s],
  ] as const)('tool_calls required in the %s format', async (format, shape) => {
    const weather = { type: 'object', properties: { city: { type: 'string', maxLength: 10 } }, required: ['city'], additionalProperties: false };
    const other = await StructuredOutputCompiler.create(ckpt.tokenizer.grammarVocab(), { vocabSize: ckpt.spec.vocabSize, stopTokenIds: ckpt.generation.eosTokenIds, toolCallFormat: format });
    try {
      const spec: OutputConstraint = { kind: 'tool_calls', mode: 'required', parallel: false, tools: [{ name: 'get_weather', parameters: weather, strict: false }] };
      const run = await collect(native.engine.generate(request(`tools-${format}`, 5, 3, { constraints: await other.constraints(spec, 3) })));
      const validate = new Ajv().compile(weather);
      for (const text of run.texts) {
        const m = shape.exec(text);
        expect(m).not.toBeNull();
        expect(validate(JSON.parse(m![1]!))).toBe(true);
      }
    } finally {
      other.dispose();
    }
  });

  it("a strict tool's arguments carry only the declared keys (none here); a non-strict one may add others", async () => {
    const open = { type: 'object', properties: {} };
    const texts = async (strict: boolean) => {
      const spec: OutputConstraint = { kind: 'tool_calls', mode: 'required', parallel: false, tools: [{ name: 'f', parameters: open, strict }] };
      return (await collect(native.engine.generate(request(`strict-${strict}`, 21, 8, { constraints: await compiler.constraints(spec, 8) })))).texts;
    };
    // Strict: the only arguments are {}; not strict: the model may open a key of its own (a story, for this one).
    expect(await texts(true)).toEqual(Array.from({ length: 8 }, () => '<tool_call>\n{"name": "f", "arguments": {}}\n</tool_call>'));
    expect((await texts(false)).some((t) => t.includes('"arguments": {"'))).toBe(true);
  });

  it('a refused request disposes the constraints it was given', async () => {
    const constraints = await compiler.constraints({ kind: 'json_object' }, 2);
    let disposed = 0;
    const watched = constraints.map((c) => ({ nextMask: () => c.nextMask(), accept: (id: number) => c.accept(id), isTerminated: () => c.isTerminated(), dispose: () => (disposed++, c.dispose()) }));
    expect(() => native.engine.generate(request('bad', 1, 2, { maxTokens: 10_000, constraints: watched }))).toThrow(/context length/);
    expect(disposed).toBe(2);
  });
});

describe('checkJsonSchema keywords against what xgrammar enforces', () => {
  /** [schema, an instance the schema forbids]: the grammar must refuse every one. */
  const enforced: Array<[string, Record<string, unknown>, string]> = [
    ['type', { type: 'integer' }, '"x"'],
    ['type list', { type: ['integer', 'null'] }, '"x"'],
    ['properties + required', { type: 'object', properties: { a: { type: 'integer' } }, required: ['a'] }, '{}'],
    ['additionalProperties false', { type: 'object', properties: { a: { type: 'integer' } }, additionalProperties: false }, '{"b": 1}'],
    ['patternProperties', { type: 'object', patternProperties: { '^a': { type: 'integer' } }, additionalProperties: false }, '{"b": 1}'],
    ['propertyNames', { type: 'object', propertyNames: { pattern: '^a' }, additionalProperties: { type: 'integer' } }, '{"b": 1}'],
    ['maxProperties', { type: 'object', maxProperties: 1, additionalProperties: { type: 'integer' } }, '{"a": 1, "b": 2}'],
    ['items', { type: 'array', items: { type: 'integer' } }, '["x"]'],
    ['prefixItems', { type: 'array', prefixItems: [{ type: 'integer' }], items: false }, '[1, 2]'],
    ['minItems', { type: 'array', items: { type: 'integer' }, minItems: 2 }, '[1]'],
    ['maxItems', { type: 'array', items: { type: 'integer' }, maxItems: 1 }, '[1, 2]'],
    ['enum', { enum: ['x', 1] }, '2'],
    ['const', { const: 'x' }, '"y"'],
    ['anyOf', { anyOf: [{ type: 'integer' }, { type: 'string' }] }, 'true'],
    ['oneOf', { oneOf: [{ type: 'integer' }, { type: 'string' }] }, 'true'],
    ['$ref', { $defs: { a: { type: 'integer' } }, $ref: '#/$defs/a' }, '"x"'],
    ['minLength', { type: 'string', minLength: 3 }, '"ab"'],
    ['maxLength', { type: 'string', maxLength: 3 }, '"abcd"'],
    ['pattern', { type: 'string', pattern: '^[a-z]+$' }, '"aB"'],
    ['format', { type: 'string', format: 'date' }, '"nope"'],
    ['integer minimum alone', { type: 'integer', minimum: 5 }, '4'],
    ['integer exclusiveMinimum alone', { type: 'integer', exclusiveMinimum: 5 }, '5'],
    ['integer maximum', { type: 'integer', maximum: 5 }, '7'],
    ['integer exclusiveMaximum', { type: 'integer', exclusiveMaximum: 5 }, '5'],
  ];
  it.each(enforced)('%s is enforced', async (_name, schema, bad) => {
    const xg = xgrammar();
    const grammar = await xg.Grammar.fromJSONSchema(JSON.stringify(checkJsonSchema(schema, 'schema')), false, undefined, undefined, true);
    try {
      expect(await xg.Testings.isGrammarAcceptString(grammar, bad)).toBe(false);
    } finally {
      grammar.dispose();
    }
  });

  const refused: Array<[string, Record<string, unknown>, string]> = [
    ['multipleOf', { type: 'integer', multipleOf: 5 }, 'schema.multipleOf'],
    ['uniqueItems', { type: 'array', uniqueItems: true }, 'schema.uniqueItems'],
    ['contains', { type: 'array', contains: { const: 1 } }, 'schema.contains'],
    ['not', { not: { type: 'integer' } }, 'schema.not'],
    ['allOf', { allOf: [{ type: 'integer' }] }, 'schema.allOf'],
    ['if', { if: { type: 'integer' }, then: { minimum: 1 } }, 'schema.if'],
    ['minProperties', { type: 'object', minProperties: 1 }, 'schema.minProperties'],
    ['dependentRequired', { type: 'object', dependentRequired: { a: ['b'] } }, 'schema.dependentRequired'],
    ['number bounds', { type: 'number', minimum: 1 }, 'schema.minimum'],
    ['unknown format', { type: 'string', format: 'zzz' }, 'schema.format'],
    ['lookahead', { type: 'string', pattern: '^(?=a)' }, 'schema.pattern'],
    ['bad type', { type: 'strnig' }, 'schema.type'],
    ['dangling $ref', { $ref: '#/$defs/nope' }, 'schema.$ref'],
    ['nested', { type: 'object', properties: { a: { type: 'array', items: { type: 'integer', multipleOf: 2 } } } }, 'schema.properties.a.items.multipleOf'],
    ['false schema', { type: 'object', properties: { a: false } }, 'schema.properties.a'],
    // Two that abort the grammar compiler: refused before they reach it.
    ['unicode property escape', { type: 'string', pattern: '^\\p{L}+$' }, 'schema.pattern'],
    ['minItems beyond closed prefixItems', { type: 'array', prefixItems: [{ type: 'integer' }], items: false, minItems: 3 }, 'schema.minItems'],
  ];
  it.each(refused)('%s is refused, naming where', (_name, schema, param) => {
    let error: unknown;
    try {
      checkJsonSchema(schema, 'schema');
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(JsonSchemaSupportError);
    expect((error as JsonSchemaSupportError).param).toBe(param);
  });
});
