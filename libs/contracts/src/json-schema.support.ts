/**
 * Which JSON Schema a structured output (response_format json_schema, a tool's parameters) may use: every
 * keyword the constrained decoder enforces is allowed, every other one is refused naming it and where it is
 * (never silently ignored), and the schema is returned in the form the grammar compiler wants. Pure; the
 * grammar compiler itself lives in libs/model/grammar.
 *
 * The list was measured against xgrammar 0.1.27 (libs/model/src/grammar/json-schema.grammar.spec.ts feeds
 * each keyword a violating instance): it enforces types, properties/required/additionalProperties,
 * patternProperties, propertyNames, maxProperties, items/prefixItems/minItems/maxItems, enum, const,
 * anyOf/oneOf (as a union), $ref into $defs/definitions, string minLength/maxLength/pattern/known formats,
 * and integer bounds. It silently ignores multipleOf, uniqueItems, contains, not, if/then/else, allOf,
 * dependentRequired, unknown formats and (wrongly) number bounds, and aborts on minProperties.
 */

export class JsonSchemaSupportError extends Error {
  constructor(
    /** Where in the request, e.g. `response_format.json_schema.schema.properties.age.multipleOf`. */
    readonly param: string,
    message: string,
  ) {
    super(message);
    this.name = 'JsonSchemaSupportError';
  }
}

const TYPES = new Set(['string', 'number', 'integer', 'boolean', 'object', 'array', 'null']);
/** Keywords that describe and never constrain. */
const ANNOTATIONS = new Set(['title', 'description', 'default', 'examples', '$schema', '$id', '$comment', 'deprecated', 'readOnly', 'writeOnly']);
const SUPPORTED = new Set([
  'type',
  'properties',
  'required',
  'additionalProperties',
  'patternProperties',
  'propertyNames',
  'maxProperties',
  'items',
  'prefixItems',
  'minItems',
  'maxItems',
  'enum',
  'const',
  'anyOf',
  'oneOf',
  '$ref',
  '$defs',
  'definitions',
  'minLength',
  'maxLength',
  'pattern',
  'format',
  'minimum',
  'maximum',
  'exclusiveMinimum',
  'exclusiveMaximum',
]);
export const SUPPORTED_STRING_FORMATS = ['email', 'date', 'date-time', 'time', 'duration', 'uuid', 'ipv4', 'ipv6', 'hostname', 'uri', 'uri-reference'];
const BOUNDS = ['minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum'] as const;
const MAX_DEPTH = 32;
/** Serialized size; larger schemas compile slowly and are almost always a mistake. */
export const MAX_SCHEMA_BYTES = 64 * 1024;

type SchemaObject = Record<string, unknown>;

const isObject = (v: unknown): v is SchemaObject => typeof v === 'object' && v !== null && !Array.isArray(v);
const isCount = (v: unknown): boolean => Number.isInteger(v) && (v as number) >= 0;

/**
 * Checks `schema` (found at request path `param`) and returns the schema the grammar compiler gets: the same,
 * except that an integer with only a lower bound also gets Number.MAX_SAFE_INTEGER as its upper one (the
 * compiler enforces lower bounds only in a range). Throws JsonSchemaSupportError.
 */
export function checkJsonSchema(schema: unknown, param: string): SchemaObject {
  if (!isObject(schema)) throw new JsonSchemaSupportError(param, `'${param}' must be a JSON Schema object.`);
  if (JSON.stringify(schema).length > MAX_SCHEMA_BYTES) {
    throw new JsonSchemaSupportError(param, `'${param}' is larger than ${MAX_SCHEMA_BYTES} bytes.`);
  }
  const definitions = new Set<string>();
  for (const key of ['$defs', 'definitions'] as const) {
    const defs = schema[key];
    if (defs === undefined) continue;
    if (!isObject(defs)) throw new JsonSchemaSupportError(`${param}.${key}`, `'${param}.${key}' must be an object of schemas.`);
    for (const name of Object.keys(defs)) definitions.add(`#/${key}/${name}`);
  }
  return walk(schema, param, 0, definitions) as SchemaObject;
}

function walk(node: unknown, at: string, depth: number, definitions: ReadonlySet<string>): unknown {
  if (typeof node === 'boolean') {
    if (!node) throw new JsonSchemaSupportError(at, `'${at}' is false: no value can match it.`);
    return node;
  }
  if (!isObject(node)) throw new JsonSchemaSupportError(at, `'${at}' must be a JSON Schema object or true.`);
  if (depth > MAX_DEPTH) throw new JsonSchemaSupportError(at, `'${at}' nests deeper than ${MAX_DEPTH} levels.`);
  const out: SchemaObject = {};
  const sub = (value: unknown, path: string) => walk(value, path, depth + 1, definitions);
  const schemaMap = (key: string): SchemaObject => {
    const value = node[key];
    if (!isObject(value)) throw new JsonSchemaSupportError(`${at}.${key}`, `'${at}.${key}' must be an object of schemas.`);
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, sub(v, `${at}.${key}.${k}`)]));
  };
  const schemaList = (key: string): unknown[] => {
    const value = node[key];
    if (!Array.isArray(value) || value.length === 0) throw new JsonSchemaSupportError(`${at}.${key}`, `'${at}.${key}' must be a non-empty array of schemas.`);
    return value.map((v, i) => sub(v, `${at}.${key}[${i}]`));
  };
  const count = (key: string) => {
    if (!isCount(node[key])) throw new JsonSchemaSupportError(`${at}.${key}`, `'${at}.${key}' must be a non-negative integer.`);
    return node[key];
  };
  const types = typesOf(node.type, at);
  for (const key of Object.keys(node)) {
    const value = node[key];
    if (ANNOTATIONS.has(key)) {
      out[key] = value;
      continue;
    }
    if (!SUPPORTED.has(key)) {
      throw new JsonSchemaSupportError(
        `${at}.${key}`,
        `'${at}' uses '${key}', which structured outputs cannot enforce. Supported keywords: ${[...SUPPORTED].join(', ')}.`,
      );
    }
    switch (key) {
      case 'type':
        out.type = value;
        break;
      case 'properties':
      case 'patternProperties':
      case '$defs':
      case 'definitions':
        out[key] = schemaMap(key);
        if (key === 'patternProperties') for (const p of Object.keys(value as SchemaObject)) checkPattern(p, `${at}.patternProperties`);
        break;
      case 'required':
        if (!Array.isArray(value) || value.some((v) => typeof v !== 'string')) {
          throw new JsonSchemaSupportError(`${at}.required`, `'${at}.required' must be an array of property names.`);
        }
        out.required = value;
        break;
      case 'additionalProperties':
      case 'propertyNames':
        out[key] = typeof value === 'boolean' && key === 'additionalProperties' ? value : sub(value, `${at}.${key}`);
        break;
      case 'items':
        out.items = typeof value === 'boolean' ? value : sub(value, `${at}.items`);
        break;
      case 'prefixItems':
      case 'anyOf':
      case 'oneOf':
        out[key] = schemaList(key);
        break;
      case 'minItems':
      case 'maxItems':
      case 'minLength':
      case 'maxLength':
      case 'maxProperties':
        out[key] = count(key);
        break;
      case 'enum':
        if (!Array.isArray(value) || value.length === 0) throw new JsonSchemaSupportError(`${at}.enum`, `'${at}.enum' must be a non-empty array.`);
        out.enum = value;
        break;
      case 'const':
        out.const = value;
        break;
      case '$ref':
        if (typeof value !== 'string' || (value !== '#' && !definitions.has(value))) {
          throw new JsonSchemaSupportError(`${at}.$ref`, `'${at}.$ref' must point into the root's $defs or definitions (got ${JSON.stringify(value)}).`);
        }
        out.$ref = value;
        break;
      case 'pattern':
        checkPattern(value, `${at}.pattern`);
        out.pattern = value;
        break;
      case 'format':
        if (typeof value !== 'string' || !SUPPORTED_STRING_FORMATS.includes(value)) {
          throw new JsonSchemaSupportError(`${at}.format`, `'${at}.format' ${JSON.stringify(value)} is not supported. Supported formats: ${SUPPORTED_STRING_FORMATS.join(', ')}.`);
        }
        out.format = value;
        break;
      default: // numeric bounds, below
        break;
    }
  }
  checkBounds(node, out, at, types);
  if (Array.isArray(out.prefixItems) && out.items === false && (out.minItems as number | undefined) !== undefined && (out.minItems as number) > out.prefixItems.length) {
    throw new JsonSchemaSupportError(`${at}.minItems`, `'${at}.minItems' is more than its ${out.prefixItems.length} prefixItems while items is false: no array can match.`);
  }
  if (out.minItems !== undefined && out.maxItems !== undefined && (out.minItems as number) > (out.maxItems as number)) {
    throw new JsonSchemaSupportError(`${at}.minItems`, `'${at}.minItems' is more than its maxItems.`);
  }
  if (out.minLength !== undefined && out.maxLength !== undefined && (out.minLength as number) > (out.maxLength as number)) {
    throw new JsonSchemaSupportError(`${at}.minLength`, `'${at}.minLength' is more than its maxLength.`);
  }
  return out;
}

function typesOf(type: unknown, at: string): string[] | null {
  if (type === undefined) return null;
  const list = Array.isArray(type) ? type : [type];
  if (list.length === 0 || list.some((t) => typeof t !== 'string' || !TYPES.has(t))) {
    throw new JsonSchemaSupportError(`${at}.type`, `'${at}.type' must be one of ${[...TYPES].join(', ')} (or an array of them); got ${JSON.stringify(type)}.`);
  }
  return list as string[];
}

/** Numeric bounds are enforced for integers only; a lone lower bound gets an upper one (see checkJsonSchema). */
function checkBounds(node: SchemaObject, out: SchemaObject, at: string, types: string[] | null): void {
  const present = BOUNDS.filter((k) => node[k] !== undefined);
  if (present.length === 0) return;
  if (types === null || types.some((t) => t !== 'integer')) {
    throw new JsonSchemaSupportError(`${at}.${present[0]}`, `'${at}.${present[0]}': numeric bounds are enforced only on "type": "integer".`);
  }
  for (const key of present) {
    if (!Number.isSafeInteger(node[key])) throw new JsonSchemaSupportError(`${at}.${key}`, `'${at}.${key}' must be a safe integer.`);
    out[key] = node[key];
  }
  if (out.maximum === undefined && out.exclusiveMaximum === undefined) out.maximum = Number.MAX_SAFE_INTEGER;
  const low = out.minimum !== undefined ? (out.minimum as number) : out.exclusiveMinimum !== undefined ? (out.exclusiveMinimum as number) + 1 : -Infinity;
  const high = out.maximum !== undefined ? (out.maximum as number) : (out.exclusiveMaximum as number) - 1;
  if (low > high) throw new JsonSchemaSupportError(`${at}.${present[0]}`, `'${at}' has no integer between its bounds.`);
}

/** JavaScript must compile it, and it may not use what a regular grammar cannot express. */
function checkPattern(pattern: unknown, at: string): void {
  if (typeof pattern !== 'string') throw new JsonSchemaSupportError(at, `'${at}' must be a string.`);
  try {
    new RegExp(pattern, 'u');
  } catch (err) {
    throw new JsonSchemaSupportError(at, `'${at}' is not a valid regular expression (${err instanceof Error ? err.message : String(err)}).`);
  }
  if (/\(\?<?[=!]|\\[1-9]|\\k</.test(pattern)) {
    throw new JsonSchemaSupportError(at, `'${at}' uses a lookaround or a backreference, which structured outputs cannot enforce.`);
  }
  if (/\\[pP]\{/.test(pattern)) {
    throw new JsonSchemaSupportError(at, `'${at}' uses a Unicode property escape (\\p{...}), which structured outputs cannot enforce; use explicit character ranges.`);
  }
}
