/**
 * FeedbackService with plain fakes for JetStream and the store: what is accepted, what is refused and
 * with which OpenAI error, when an unknown completion counts as still in flight, and idempotent retries.
 */
import { Registry } from 'prom-client';
import { newTimeOrderedId, type CompletionRecord, type FeedbackEvent } from '@flywheel/contracts';
import { MeshError } from '@flywheel/mesh';
import type { Store } from '@flywheel/store';
import { OpenAiError, toOpenAiError } from '../http/openai-error';
import { StoreUnavailableError } from '../store/store.errors';
import type { StoreHandle } from '../store/store.handle';
import { FeedbackService } from './feedback.service';
import type { FlywheelJetStream } from './flywheel.jetstream';
import { FlywheelMetrics } from './flywheel.metrics';

const KEY = 'key_aaaaaaaaaaaa';
const caller = { keyId: KEY, requestId: 'req_1', gatewayInstanceId: 'gateway-1' };
const WINDOW_MS = 60_000;

class FakeJetStream {
  records = new Map<string, Pick<CompletionRecord, 'keyId' | 'choices'>>();
  events = new Map<string, FeedbackEvent>();
  published: FeedbackEvent[] = [];
  down = false;

  async publishFeedback(event: FeedbackEvent) {
    if (this.down) throw new MeshError('unavailable', 'not connected to NATS');
    const duplicate = this.events.has(event.id);
    if (!duplicate) this.events.set(event.id, event);
    this.published.push(event);
    return { duplicate };
  }
  async findCompletionRecord(id: string) {
    if (this.down) throw new MeshError('unavailable', 'not connected to NATS');
    return (this.records.get(id) as CompletionRecord | undefined) ?? null;
  }
  async findFeedbackEvent(id: string) {
    if (this.down) throw new MeshError('unavailable', 'not connected to NATS');
    return this.events.get(id) ?? null;
  }
}

const storeDown = { get: (): Store => { throw new StoreUnavailableError('connect ECONNREFUSED'); } };

function setup(now = Date.now()) {
  const js = new FakeJetStream();
  const id = `chatcmpl-${newTimeOrderedId(now - 10 * WINDOW_MS)}`;
  js.records.set(id, { keyId: KEY, choices: [{ index: 0, promptIndex: 0, text: 'a', finishReason: 'stop', tokenIds: [], logprobs: null }] });
  const service = new FeedbackService(js as unknown as FlywheelJetStream, storeDown as unknown as StoreHandle, new FlywheelMetrics(new Registry()), {
    inflightWindowMs: WINDOW_MS,
    now: () => now,
  });
  return { js, service, id };
}

/** A refused call as the client gets it: the error through the exception filter's mapping (a store down is a 503). */
async function refusal(promise: Promise<unknown>): Promise<OpenAiError> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof OpenAiError || err instanceof StoreUnavailableError) return toOpenAiError(err);
    throw err;
  }
  throw new Error('expected an OpenAiError');
}

describe('FeedbackService.create', () => {
  it('publishes feedback on a known completion and answers the feedback object', async () => {
    const { js, service, id } = setup();
    const { feedback, replayed } = await service.create({ completion_id: id, choice_index: 0, kind: 'rating', value: 5, comment: 'nice', user: 'u-1' }, caller);
    expect(replayed).toBe(false);
    expect(feedback).toMatchObject({ object: 'feedback', completion_id: id, choice_index: 0, kind: 'rating', value: 5, comment: 'nice', user: 'u-1', source: 'user', review_status: 'pending' });
    expect(feedback.id).toMatch(/^fb-[0-9a-f]{32}$/);
    expect(js.published).toEqual([expect.objectContaining({ id: feedback.id, completionId: id, keyId: KEY, kind: 'rating', value: 5 })]);
  });

  it.each([
    [{ kind: 'rating', value: 6 }, 'value', 'invalid_value'],
    [{ kind: 'thumbs', value: 'sideways' }, 'value', 'invalid_value'],
    [{ kind: 'preference', value: { chosen: 1, rejected: 1 } }, 'value.rejected', 'invalid_value'],
    [{ kind: 'flag', value: 'Not A Slug!' }, 'value', 'invalid_value'],
    [{ kind: 'thumbs', value: 'up', colour: 'red' }, 'colour', null],
  ])('refuses %j with a 400 naming %s', async (fields, param, code) => {
    const { js, service, id } = setup();
    const err = await refusal(service.create({ completion_id: id, ...fields }, caller));
    expect(err.toBody().error).toMatchObject({ type: 'invalid_request_error', param, code });
    expect(err.status).toBe(400);
    expect(js.published).toEqual([]);
  });

  it('refuses a missing completion_id and an unknown kind', async () => {
    const { service } = setup();
    expect((await refusal(service.create({ kind: 'thumbs', value: 'up' }, caller))).toBody().error).toMatchObject({ param: 'completion_id' });
    expect((await refusal(service.create({ completion_id: 'chatcmpl-x', kind: 'stars', value: 1 }, caller))).toBody().error).toMatchObject({ param: 'kind' });
  });

  it('refuses choices the completion does not have', async () => {
    const { service, id } = setup();
    const err = await refusal(service.create({ completion_id: id, choice_index: 1, kind: 'thumbs', value: 'up' }, caller));
    expect(err.toBody().error).toMatchObject({ param: 'choice_index', code: 'invalid_value' });
    const pref = await refusal(service.create({ completion_id: id, kind: 'preference', value: { chosen: 0, rejected: 3 } }, caller));
    expect(pref.toBody().error).toMatchObject({ param: 'value.rejected' });
  });

  describe('a ranking', () => {
    const choice = (index: number, promptIndex = 0) => ({ index, promptIndex, text: `answer ${index}`, finishReason: 'stop' as const, tokenIds: [], logprobs: null });
    function withChoices(choices: CompletionRecord['choices']) {
      const fixture = setup();
      fixture.js.records.set(fixture.id, { keyId: KEY, choices });
      return fixture;
    }

    it('of every choice, best first, is published as given', async () => {
      const { js, service, id } = withChoices([choice(0), choice(1), choice(2)]);
      const { feedback } = await service.create({ completion_id: id, kind: 'ranking', value: [2, 0, 1] }, caller);
      expect(feedback).toMatchObject({ kind: 'ranking', value: [2, 0, 1], choice_index: null });
      expect(js.published).toEqual([expect.objectContaining({ kind: 'ranking', value: [2, 0, 1] })]);
    });

    it.each([
      [[2, 0, 2], "Invalid value for 'value[2]': choice 2 is ranked twice; rank each choice once."],
      [[1], "Invalid value for 'value': a ranking orders at least two choices."],
      [[0, -1, 2], "Invalid value for 'value[1]': Too small: expected number to be >=0."],
      [[0, 1, 5], "Invalid value for 'value': the completion has 3 choices (0 to 2), got 5."],
      [[2, 0], "Invalid value for 'value': a ranking orders every choice of the completion (0 to 2, best first); missing 1."],
      [{ chosen: 0, rejected: 1 }, "Invalid type for 'value': expected array, but got an object instead."],
    ])('refuses %j with a 400 that says why', async (value, message) => {
      const { js, service, id } = withChoices([choice(0), choice(1), choice(2)]);
      const err = await refusal(service.create({ completion_id: id, kind: 'ranking', value }, caller));
      expect(err.status).toBe(400);
      expect(err.toBody().error).toMatchObject({ type: 'invalid_request_error', message });
      expect(err.toBody().error.param).toMatch(/^value/);
      expect(js.published).toEqual([]);
    });

    it('refuses choices that answer different prompts', async () => {
      const { service, id } = withChoices([choice(0, 0), choice(1, 0), choice(2, 1), choice(3, 1)]);
      const err = await refusal(service.create({ completion_id: id, kind: 'ranking', value: [0, 1, 2, 3] }, caller));
      expect(err.toBody().error).toMatchObject({ param: 'value', code: 'invalid_value', message: expect.stringContaining('answer 2 different prompts') });
    });
  });

  it("answers 404 for another key's completion, as if it did not exist", async () => {
    const { service, id } = setup();
    const err = await refusal(service.create({ completion_id: id, kind: 'thumbs', value: 'up' }, { ...caller, keyId: 'key_bbbbbbbbbbbb' }));
    expect(err.status).toBe(404);
    expect(err.toBody().error).toMatchObject({ param: 'completion_id', code: 'completion_not_found' });
  });

  it('accepts an unknown completion while its id is inside the in-flight window; with no store to ask, 503s older ones', async () => {
    const now = Date.now();
    const { js, service } = setup(now);
    const young = `chatcmpl-${newTimeOrderedId(now - WINDOW_MS / 2)}`;
    const old = `chatcmpl-${newTimeOrderedId(now - 2 * WINDOW_MS)}`;
    const timeless = 'chatcmpl-0123456789abcdef0123456789abcdef';
    await expect(service.create({ completion_id: young, kind: 'thumbs', value: 'down' }, caller)).resolves.toMatchObject({ replayed: false });
    expect(js.published.map((e) => e.completionId)).toEqual([young]);
    // The store is down here: an old id cannot be ruled out, so 503 rather than a wrong 404.
    expect((await refusal(service.create({ completion_id: old, kind: 'thumbs', value: 'down' }, caller))).status).toBe(503);
    expect((await refusal(service.create({ completion_id: timeless, kind: 'thumbs', value: 'down' }, caller))).status).toBe(503);
  });

  it('404s an old unknown completion when the store can say it is not there', async () => {
    const now = Date.now();
    const js = new FakeJetStream();
    const emptyStore = {
      get: () => ({ db: { selectFrom: () => ({ select: () => ({ where: () => ({ executeTakeFirst: async () => undefined }) }) }) } }),
    };
    const service = new FeedbackService(js as unknown as FlywheelJetStream, emptyStore as unknown as StoreHandle, new FlywheelMetrics(new Registry()), {
      inflightWindowMs: WINDOW_MS,
      now: () => now,
    });
    const old = `chatcmpl-${newTimeOrderedId(now - 2 * WINDOW_MS)}`;
    const err = await refusal(service.create({ completion_id: old, kind: 'thumbs', value: 'down' }, caller));
    expect(err.status).toBe(404);
    expect(err.message).toContain(old);
  });

  it('answers a retried idempotency key with the first feedback and publishes nothing new', async () => {
    const { js, service, id } = setup();
    const first = await service.create({ completion_id: id, kind: 'thumbs', value: 'up', idempotency_key: 'k-1' }, caller);
    const again = await service.create({ completion_id: id, kind: 'thumbs', value: 'down', idempotency_key: 'k-1' }, caller);
    expect(again).toEqual({ feedback: first.feedback, replayed: true });
    expect(js.published).toHaveLength(1);
    // Another API key with the same idempotency key is other feedback.
    js.records.set(`${id}-b`, { keyId: 'key_bbbbbbbbbbbb', choices: [] });
    const other = await service.create({ completion_id: `${id}-b`, kind: 'thumbs', value: 'up', idempotency_key: 'k-1' }, { ...caller, keyId: 'key_bbbbbbbbbbbb' });
    expect(other.feedback.id).not.toBe(first.feedback.id);
  });

  it('answers 503 when JetStream cannot take the feedback', async () => {
    const { js, service, id } = setup();
    js.down = true;
    const err = await refusal(service.create({ completion_id: id, kind: 'thumbs', value: 'up' }, caller));
    expect(err.status).toBe(503);
    expect(err.headers['retry-after']).toBe('1');
  });
});
