import { MALFORMED_PAYLOAD, SafeNatsDeserializer } from './nest-transport';

const enc = (v: unknown) => new TextEncoder().encode(typeof v === 'string' ? v : JSON.stringify(v));

describe('SafeNatsDeserializer', () => {
  const d = new SafeNatsDeserializer();

  it('passes Nest request packets through', () => {
    expect(d.deserialize(enc({ pattern: 'p', data: { a: 1 }, id: 'x' }), { channel: 'p', replyTo: 'r' })).toEqual({ pattern: 'p', data: { a: 1 }, id: 'x' });
  });

  it('maps bytes that are not JSON to a request carrying MALFORMED_PAYLOAD so the handler replies', () => {
    const m = d.deserialize(enc('{oops'), { channel: 'p', replyTo: 'r' });
    expect(m.data).toBe(MALFORMED_PAYLOAD);
    expect(m).toHaveProperty('id');
  });

  it('treats a plain JSON request as the payload and a no-reply message as an event', () => {
    expect(d.deserialize(enc({ from: 'cli' }), { channel: 'p', replyTo: 'r' })).toMatchObject({ pattern: 'p', data: { from: 'cli' } });
    expect(d.deserialize(enc({ from: 'cli' }), { channel: 'p' })).not.toHaveProperty('id');
  });
});
