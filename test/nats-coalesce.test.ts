/**
 * Write coalescing on a real NATS connection (libs/mesh nats.write-coalescing.ts): commands published from separate
 * callbacks of one event-loop turn leave in one socket write instead of one each, arrive complete and in order, and
 * flush() and request/reply still work. Fails when nats.js changes the internals it replaces (coalesceWrites then
 * answers false).
 */
import { connect, type NatsConnection } from 'nats';
import { coalesceWrites, connectMesh } from '@flywheel/mesh';

const NATS_URL = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';

interface Spied {
  nc: NatsConnection;
  writes: () => number;
}

/** Counts the connection's socket writes (nats.js's transport.send). */
function spyWrites(nc: NatsConnection): Spied {
  const transport = (nc as unknown as { protocol: { transport: { send(b: Uint8Array): void } } }).protocol.transport;
  const send = transport.send.bind(transport);
  let n = 0;
  transport.send = (b: Uint8Array) => {
    n++;
    send(b);
  };
  return { nc, writes: () => n };
}

/** `count` publishes, each from its own timer callback of the same timers phase (as requests are I/O callbacks). */
async function publishFromCallbacks(nc: NatsConnection, subject: string, count: number): Promise<void> {
  await new Promise<void>((resolve) => {
    for (let i = 0; i < count; i++) setTimeout(() => nc.publish(subject, new TextEncoder().encode(String(i))), 0);
    setTimeout(resolve, 0);
  });
  await nc.flush();
}

describe('NATS write coalescing', () => {
  let reader: NatsConnection;
  const opened: NatsConnection[] = [];
  const open = async (name: string) => {
    const nc = await connectMesh({ servers: [NATS_URL], name });
    opened.push(nc);
    return spyWrites(nc);
  };
  beforeAll(async () => {
    reader = await connect({ servers: NATS_URL });
  });
  afterAll(async () => {
    await reader?.close();
    for (const nc of opened) await nc.close();
  });

  it('sends the commands of one event-loop turn in one write, complete and in order', async () => {
    const subject = `coalesce.${process.pid}.${Date.now()}`;
    const got: string[] = [];
    reader.subscribe(subject, { callback: (_e, m) => got.push(new TextDecoder().decode(m.data)) });
    await reader.flush();

    const plain = await open('coalesce-plain');
    const coalesced = await open('coalesce-on');
    expect(coalesceWrites(coalesced.nc)).toBe(true);
    expect(coalesceWrites(coalesced.nc)).toBe(true); // applying twice is harmless

    const before = { plain: plain.writes(), coalesced: coalesced.writes() };
    await publishFromCallbacks(plain.nc, subject, 20);
    await publishFromCallbacks(coalesced.nc, subject, 20);
    // nats.js writes once per callback; coalesced, the twenty publishes and the flush's PING leave in at most two.
    expect(plain.writes() - before.plain).toBeGreaterThanOrEqual(20);
    expect(coalesced.writes() - before.coalesced).toBeLessThanOrEqual(2);

    await reader.flush();
    const order = Array.from({ length: 20 }, (_, i) => String(i));
    expect(got).toEqual([...order, ...order]);

    // Request/reply over the coalesced connection still answers (its own reply subscription goes out too).
    reader.subscribe(`${subject}.echo`, { callback: (_e, m) => m.respond(m.data) });
    await reader.flush();
    const reply = await coalesced.nc.request(`${subject}.echo`, new TextEncoder().encode('ping'), { timeout: 2_000 });
    expect(new TextDecoder().decode(reply.data)).toBe('ping');
  });
});
