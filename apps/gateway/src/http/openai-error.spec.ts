import { BadRequestException, HttpException, NotFoundException } from '@nestjs/common';
import { chatCompletionRequestSchema, completionRequestSchema } from '@flywheel/contracts';
import { MeshError } from '@flywheel/mesh';
import { fromZodError, paramOf, toOpenAiError } from './openai-error';

const zodErrorFor = (body: unknown) => {
  const r = chatCompletionRequestSchema.safeParse(body);
  if (r.success) throw new Error('expected a failure');
  return fromZodError(r.error, body);
};
const base = { model: 'm', messages: [{ role: 'user', content: 'hi' }] };

describe('OpenAI errors', () => {
  it('names nested parameters the way OpenAI does', () => {
    expect(paramOf(['messages', 0, 'content'])).toBe('messages[0].content');
    expect(paramOf([])).toBeNull();
  });

  it.each([
    [{ messages: base.messages }, 'model', /Missing required parameter: 'model'/],
    [{ ...base, temperature: 'hot' }, 'temperature', /Invalid type for 'temperature': expected number, but got a string/],
    [{ ...base, temperature: 3 }, 'temperature', /Invalid value for 'temperature'/],
    [{ ...base, messages: [{ role: 'user', content: 3 }] }, 'messages[0].content', /expected string or array, but got a number/],
    [{ ...base, messages: [{ role: 'user', content: [{ type: 'image_url' }] }] }, 'messages[0].content[0].type', /only content parts of type 'text'/],
    [{ ...base, stop: ['a', 'b', 'c', 'd', 'e'] }, 'stop', /Invalid value for 'stop': Too big: expected array to have <=4 items/],
    [{ ...base, frobnicate: 1 }, 'frobnicate', /Unrecognized request argument supplied: frobnicate/],
    [{ ...base, messages: [] }, 'messages', /Invalid value for 'messages'/],
  ])('turns a bad body into a 400 naming the parameter (%#)', (body, param, message) => {
    const e = zodErrorFor(body);
    expect(e.status).toBe(400);
    expect(e.type).toBe('invalid_request_error');
    expect(e.param).toBe(param);
    expect(e.message).toMatch(message);
  });

  it("says what a union's branch of the value's own type rejected, not just that the input is invalid", () => {
    const r = completionRequestSchema.safeParse({ model: 'm', prompt: [] });
    if (r.success) throw new Error('expected a failure');
    const e = fromZodError(r.error, { model: 'm', prompt: [] });
    expect([e.param, e.message]).toEqual(['prompt', "Invalid value for 'prompt': Too small: expected array to have >=1 items."]);
  });

  it('says when the body is not an object at all', () => {
    expect(zodErrorFor([1, 2]).message).toMatch(/must be a JSON object \(got an array\)/);
  });

  it.each([
    ['context_length_exceeded', 400, 'context_length_exceeded', 'invalid_request_error'],
    ['overloaded', 429, 'overloaded', 'server_error'],
    ['unavailable', 503, 'service_unavailable', 'server_error'],
    ['timeout', 504, 'timeout', 'server_error'],
    ['not_found', 404, 'not_found', 'invalid_request_error'],
    ['internal', 502, 'upstream_error', 'server_error'],
  ] as const)('maps MeshError %s to HTTP %i', (code, status, apiCode, type) => {
    const e = toOpenAiError(new MeshError(code, 'x'), 'prompt');
    expect([e.status, e.code, e.type]).toEqual([status, apiCode, type]);
    if (code === 'context_length_exceeded') expect(e.param).toBe('prompt');
    if (code === 'overloaded') expect(e.headers['retry-after']).toBe('1');
  });

  it('recognises Fastify body errors that Nest rethrows by status', () => {
    expect(toOpenAiError(new HttpException('Request body is too large', 413)).toBody().error).toMatchObject({ type: 'invalid_request_error', code: 'request_too_large' });
    expect(toOpenAiError(new BadRequestException('Body is not valid JSON')).code).toBe('invalid_json');
    expect(toOpenAiError(new NotFoundException('Cannot GET /v1/x')).message).toBe('Unknown request URL: GET /v1/x.');
  });

  it('answers 400, not 500, when a NUL byte in client text reaches the database (SQLSTATE 22021 / 22P05)', () => {
    for (const code of ['22021', '22P05']) {
      const dbErr = Object.assign(new Error('invalid byte sequence for encoding "UTF8": 0x00'), { code });
      const e = toOpenAiError(dbErr);
      expect(e.status).toBe(400);
      expect(e.code).toBe('invalid_value');
      expect(e.type).toBe('invalid_request_error');
    }
    expect(toOpenAiError(Object.assign(new Error('deadlock'), { code: '40P01' })).status).toBe(500);
  });

  it('keeps 500 for real bugs only', () => {
    const e = toOpenAiError(new TypeError('boom'));
    expect(e.status).toBe(500);
    expect(e.message).not.toContain('boom');
  });
});
