/**
 * OpenAI's error shape and the one mapping from everything that can fail (a zod issue, a MeshError
 * from the policy, a Fastify body error surfaced by Nest, the store down or refusing a client's text,
 * a bug) to an HTTP status plus that body. Plain functions and one error class; the exception filter
 * and the SSE writer both use them.
 */
import { HttpException } from '@nestjs/common';
import type { z } from 'zod';
import type { OpenAiErrorBody, OpenAiErrorType } from '@flywheel/contracts';
import { MeshError } from '@flywheel/mesh';
import { isDatabaseTextEncodingError, StoreUnavailableError } from '../store/store.errors';

export class OpenAiError extends Error {
  constructor(
    readonly status: number,
    readonly type: OpenAiErrorType,
    message: string,
    readonly param: string | null = null,
    readonly code: string | null = null,
    /** Extra response headers (Retry-After). */
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'OpenAiError';
  }

  toBody(): OpenAiErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }

  static invalid(message: string, param: string | null = null, code: string | null = null): OpenAiError {
    return new OpenAiError(400, 'invalid_request_error', message, param, code);
  }
}

/** `messages.0.content` → `messages[0].content`, OpenAI's way of naming a nested parameter. */
export function paramOf(path: ReadonlyArray<PropertyKey>): string | null {
  let out = '';
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`;
    else out += out === '' ? String(key) : `.${String(key)}`;
  }
  return out === '' ? null : out;
}

type Issue = z.core.$ZodIssue;

/** The most specific issue: a union's branch that got furthest, path made absolute. */
interface Located {
  issue: Issue;
  path: PropertyKey[];
  /** Set when every branch of a union rejected the value's type: all the types it could have been. */
  expectedAny?: string;
}

function deepestIssue(issue: Issue, prefix: PropertyKey[] = []): Located {
  const path = [...prefix, ...issue.path];
  if (issue.code === 'invalid_union' && issue.errors.length > 0) {
    let best: Located | null = null;
    for (const branch of issue.errors) {
      const first = branch[0];
      if (!first) continue;
      const candidate = deepestIssue(first, path);
      if (!best || candidate.path.length > best.path.length) best = candidate;
    }
    if (best && best.path.length > path.length) return best;
    // Every branch failed on the value's own type: one invalid_type naming all expected types.
    const expected = issue.errors.flatMap((b) => (b[0]?.code === 'invalid_type' && b[0].path.length === 0 ? [b[0].expected] : []));
    if (expected.length === issue.errors.length) return { issue, path, expectedAny: [...new Set(expected)].join(' or ') };
    // A branch of the value's own type rejected it (`stop` of five strings: too many, not "invalid input"): its issue.
    const ownType = issue.errors.find((b) => b[0] !== undefined && !(b[0].code === 'invalid_type' && b[0].path.length === 0));
    if (ownType?.[0]) return deepestIssue(ownType[0], path);
  }
  return { issue, path };
}

function valueAt(body: unknown, path: ReadonlyArray<PropertyKey>): unknown {
  let v: unknown = body;
  for (const key of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<PropertyKey, unknown>)[key];
  }
  return v;
}

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return 'an object';
  return `a ${typeof v}`;
}

/** A failed request-body parse as a 400 naming the parameter at fault. */
export function fromZodError(error: z.ZodError, body: unknown): OpenAiError {
  const first = error.issues[0];
  if (!first) return OpenAiError.invalid('Invalid request body.');
  const { issue, path, expectedAny } = deepestIssue(first);
  if (issue.code === 'unrecognized_keys') {
    const key = issue.keys[0] ?? '';
    const param = paramOf([...path, key]);
    return OpenAiError.invalid(`Unrecognized request argument supplied: ${param}`, param);
  }
  const param = paramOf(path);
  if (param === null) {
    return OpenAiError.invalid(`The request body must be a JSON object (got ${typeName(body)}).`);
  }
  if (issue.code === 'invalid_type' || expectedAny !== undefined) {
    const got = valueAt(body, path);
    if (got === undefined) return OpenAiError.invalid(`Missing required parameter: '${param}'.`, param);
    const expected = expectedAny ?? (issue.code === 'invalid_type' ? issue.expected : 'another type');
    return OpenAiError.invalid(`Invalid type for '${param}': expected ${expected}, but got ${typeName(got)} instead.`, param, 'invalid_type');
  }
  return OpenAiError.invalid(`Invalid value for '${param}': ${issue.message}.`, param, 'invalid_value');
}

/** Which parameter a context-length error is about, per endpoint. */
export type PromptParam = 'messages' | 'prompt';

/** A MeshError from the policy as the HTTP error a client should see. */
export function fromMeshError(err: MeshError, promptParam: PromptParam): OpenAiError {
  switch (err.code) {
    case 'invalid_payload':
      return OpenAiError.invalid(err.message, err.param);
    case 'context_length_exceeded':
      return OpenAiError.invalid(err.message, promptParam, 'context_length_exceeded');
    case 'not_found':
      return new OpenAiError(404, 'invalid_request_error', err.message, null, 'not_found');
    case 'overloaded':
      return new OpenAiError(429, 'server_error', `The model is overloaded: ${err.message}. Please retry shortly.`, null, 'overloaded', {
        'retry-after': '1',
      });
    case 'unavailable':
      return new OpenAiError(503, 'server_error', `The policy service is unavailable: ${err.message}.`, null, 'service_unavailable', {
        'retry-after': '1',
      });
    case 'timeout':
      return new OpenAiError(504, 'server_error', `The policy service did not answer in time: ${err.message}.`, null, 'timeout');
    case 'cancelled':
      return new OpenAiError(503, 'server_error', `The generation was cancelled: ${err.message}.`, null, 'cancelled');
    case 'internal':
      return new OpenAiError(502, 'server_error', `The policy service failed: ${err.message}.`, null, 'upstream_error');
  }
}

/**
 * Anything thrown while serving a request. Nest turns Fastify's body errors (invalid JSON, too large,
 * wrong media type) into HttpExceptions that keep only the status, so those are recognised by status.
 */
export function toOpenAiError(err: unknown, promptParam: PromptParam = 'messages'): OpenAiError {
  if (err instanceof OpenAiError) return err;
  if (err instanceof MeshError) return fromMeshError(err, promptParam);
  if (err instanceof StoreUnavailableError) {
    return new OpenAiError(503, 'server_error', `The store is unavailable right now (${err.message}). Please retry shortly.`, null, 'store_unavailable', {
      'retry-after': '1',
    });
  }
  if (err instanceof HttpException) {
    const status = err.getStatus();
    const message = err.message;
    if (status === 413) {
      return new OpenAiError(413, 'invalid_request_error', 'The request body is too large.', null, 'request_too_large');
    }
    if (status === 415) {
      return new OpenAiError(415, 'invalid_request_error', `Unsupported content type: send a JSON body with Content-Type: application/json.`, null, 'unsupported_media_type');
    }
    if (status === 404) return new OpenAiError(404, 'invalid_request_error', `Unknown request URL: ${message.replace(/^Cannot /, '')}.`, null, 'unknown_url');
    if (status === 400) {
      return OpenAiError.invalid(
        `We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload.) ${message}`,
        null,
        'invalid_json',
      );
    }
    if (status < 500) return new OpenAiError(status, 'invalid_request_error', message);
  }
  if (isDatabaseTextEncodingError(err)) {
    // A NUL byte (or a lone surrogate) in a client's id, filter or text reached a database query: the
    // request is bad, not the server (found by test/reliability: GET /admin/api/completions/%00 was a 500).
    return OpenAiError.invalid('Invalid value: text parameters must not contain NUL bytes or invalid Unicode.', null, 'invalid_value');
  }
  return new OpenAiError(500, 'server_error', 'The server had an error while processing your request.', null, 'internal_error');
}
