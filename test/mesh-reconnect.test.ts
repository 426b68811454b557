/**
 * MeshClient across a NATS restart, on a private nats-server (this machine's shared one is never touched).
 * nats.js 2.x drops whatever is published while it is disconnected, so a request sent into that gap used to
 * wait out its whole timeout (the reliability suite's 504 after a NATS restart). Now: a request while
 * disconnected, or in flight when the connection drops, fails at once with `unavailable`, and a call that
 * may be repeated (retryUndeliveredMs) is resent until the server and the responder are back.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { connect, JSONCodec, type NatsConnection, type Subscription } from 'nats';
import { z } from 'zod';
import { MeshClient, MeshError, reconnectOptions } from '@flywheel/mesh';
import { freePort, run, stop, waitFor, type Running } from './support/processes';

jest.setTimeout(60_000);

const codec = JSONCodec<unknown>();
const echo = z.object({ echo: z.string() });

describe('MeshClient across a NATS restart', () => {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'flywheel-mesh-reconnect-'));
  let port: number;
  let server: Running | undefined;
  let caller: NatsConnection;
  let responder: NatsConnection;
  let mesh: MeshClient;

  const startServer = async () => {
    const s = run('nats-server', ['-a', '127.0.0.1', '-p', String(port), '-sd', dataDir], {});
    await waitFor(async () => (/Server is ready/.test(s.output()) ? true : undefined), 15_000, 'nats-server ready');
    return s;
  };
  /** Answers `subject` in Nest's reply format: one reply, or `frames` replies then a final one (a stream). */
  const serve = (subject: string, frames = 0, delayMs = 0): Subscription =>
    responder.subscribe(subject, {
      callback: (_err, msg) => {
        const { id, data } = codec.decode(msg.data) as { id: string; data: { text: string } };
        setTimeout(() => {
          for (let i = 0; i < frames; i++) msg.respond(codec.encode({ id, response: { echo: `${data.text}-${i}` } }));
          msg.respond(codec.encode({ id, response: { echo: data.text }, isDisposed: true }));
        }, delayMs);
      },
    });
  const down = async () => {
    await stop(server);
    // the status event that marks the connection down follows the socket's close by a few ticks
    await new Promise((r) => setTimeout(r, 200));
  };
  const up = async () => {
    server = await startServer();
    await waitFor(async () => {
      try {
        await responder.flush();
        await caller.flush();
        return true;
      } catch {
        return undefined;
      }
    }, 15_000, 'clients reconnected');
  };

  beforeAll(async () => {
    port = await freePort();
    server = await startServer();
    const opts = { servers: `nats://127.0.0.1:${port}`, ...reconnectOptions() };
    caller = await connect(opts);
    responder = await connect(opts);
    mesh = new MeshClient(caller);
  });

  afterAll(async () => {
    await caller?.close();
    await responder?.close();
    await stop(server);
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('a request while NATS is down fails at once with unavailable, not after its timeout', async () => {
    const sub = serve('test.echo');
    await down();
    const t0 = performance.now();
    const err = await mesh.request('test.echo', { text: 'a' }, echo, { timeoutMs: 5_000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MeshError);
    expect((err as MeshError).code).toBe('unavailable');
    expect(performance.now() - t0).toBeLessThan(1_000);
    await up();
    expect(await mesh.request('test.echo', { text: 'b' }, echo, { timeoutMs: 5_000 })).toEqual({ echo: 'b' });
    sub.unsubscribe();
  });

  it('a repeatable request made while NATS is down is answered once it is back', async () => {
    const sub = serve('test.echo');
    await down();
    const answer = mesh.request('test.echo', { text: 'later' }, echo, { timeoutMs: 5_000, retryUndeliveredMs: 20_000 });
    await new Promise((r) => setTimeout(r, 500));
    await up();
    expect(await answer).toEqual({ echo: 'later' });
    sub.unsubscribe();
  });

  it('a request no one listens to yet is resent within its budget, and refused at once without one', async () => {
    const refused = await mesh.request('test.late', { text: 'x' }, echo, { timeoutMs: 5_000 }).catch((e: unknown) => e);
    expect((refused as MeshError).code).toBe('unavailable');
    const answer = mesh.request('test.late', { text: 'late' }, echo, { timeoutMs: 5_000, retryUndeliveredMs: 3_000 });
    await new Promise((r) => setTimeout(r, 300));
    const sub = serve('test.late');
    await responder.flush();
    expect(await answer).toEqual({ echo: 'late' });
    sub.unsubscribe();
    // a stream's first frame too
    const frames: unknown[] = [];
    const streamed = (async () => {
      for await (const f of mesh.stream('test.later', { text: 's' }, echo, { firstReplyTimeoutMs: 5_000, idleTimeoutMs: 5_000, retryUndeliveredMs: 3_000 })) frames.push(f);
    })();
    await new Promise((r) => setTimeout(r, 300));
    const sub2 = serve('test.later', 2);
    await streamed;
    expect(frames).toEqual([{ echo: 's-0' }, { echo: 's-1' }, { echo: 's' }]);
    sub2.unsubscribe();
  });

  it('a request and a stream in flight when the connection drops fail at once', async () => {
    const sub = serve('test.slow', 1, 2_500);
    await responder.flush();
    const t0 = performance.now();
    // a lost request may have been handled: not resent, whatever the budget
    const pending = mesh.request('test.slow', { text: 'r' }, echo, { timeoutMs: 4_000, retryUndeliveredMs: 4_000 }).catch((e: unknown) => e);
    const streamed = (async () => {
      for await (const _ of mesh.stream('test.slow', { text: 's' }, echo, { firstReplyTimeoutMs: 4_000, idleTimeoutMs: 4_000 })) void _;
    })().catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 300));
    await stop(server);
    for (const err of [await pending, await streamed]) {
      expect(err).toBeInstanceOf(MeshError);
      expect((err as MeshError).code).toBe('unavailable');
    }
    expect(performance.now() - t0).toBeLessThan(2_000);
    await up();
    sub.unsubscribe();
  });
});
