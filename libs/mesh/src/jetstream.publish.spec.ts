/**
 * publishToStream against a private nats-server with JetStream (a free port and a temporary store dir;
 * this machine's shared NATS is never touched): refused at once while the server is down, failed at the
 * drop while an ack is awaited, and stored again once the connection is back.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { connect, StringCodec, type NatsConnection } from 'nats';
import { publishToStream } from './jetstream.publish';
import { MeshError } from './mesh.errors';
import { reconnectOptions } from './nats.connection';
import { NatsLink } from './nats.link';
import { freePort } from '../../../test/support/processes';

jest.setTimeout(30_000);

const sc = StringCodec();
const STREAM = 'PUBLISH_SPEC';

async function until(what: string, probe: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await probe().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe('publishToStream', () => {
  const storeDir = mkdtempSync(path.join(os.tmpdir(), 'flywheel-jetstream-publish-'));
  let port: number;
  let server: ChildProcess | undefined;
  let nc: NatsConnection;

  const startServer = async () => {
    const child = spawn('nats-server', ['-js', '-a', '127.0.0.1', '-p', String(port), '-sd', storeDir], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
    server = child;
    await until('nats-server ready', async () => /Server is ready/.test(out));
  };
  const stopServer = async () => {
    const child = server;
    server = undefined;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  };
  const reconnected = () => until('client reconnected', async () => (await nc.flush(), true));

  beforeAll(async () => {
    port = await freePort();
    await startServer();
    nc = await connect({ servers: `nats://127.0.0.1:${port}`, ...reconnectOptions() });
    NatsLink.of(nc); // follows the status from connect on, as MeshConnection's MeshClient does
    const jsm = await nc.jetstreamManager();
    await jsm.streams.add({ name: STREAM, subjects: ['spec.publish.>'] });
  });

  afterAll(async () => {
    await nc?.close();
    await stopServer();
    rmSync(storeDir, { recursive: true, force: true });
  });

  it('while the server is down, rejects at once with unavailable instead of waiting its timeout', async () => {
    await stopServer();
    // the status event that marks the connection down follows the socket's close by a few ticks
    await new Promise((r) => setTimeout(r, 200));
    const t0 = performance.now();
    const err = await publishToStream(nc, 'spec.publish.down', sc.encode('lost'), { msgID: 'down-1', timeout: 5_000 }).catch((e: unknown) => e);
    const elapsedMs = performance.now() - t0;
    expect(err).toBeInstanceOf(MeshError);
    expect((err as MeshError).code).toBe('unavailable');
    expect(elapsedMs).toBeLessThan(500);
  });

  it('after the server restarts and the client reconnects, a publish is acked and stored', async () => {
    await startServer();
    await reconnected();
    const ack = await publishToStream(nc, 'spec.publish.up', sc.encode('kept'), { msgID: 'up-1', timeout: 5_000 });
    expect(ack.stream).toBe(STREAM);
    expect(ack.duplicate).toBe(false);
    const again = await publishToStream(nc, 'spec.publish.up', sc.encode('kept'), { msgID: 'up-1', timeout: 5_000 });
    expect(again.duplicate).toBe(true);
    const jsm = await nc.jetstreamManager();
    const stored = await jsm.streams.getMessage(STREAM, { last_by_subj: 'spec.publish.up' });
    expect(sc.decode(stored.data)).toBe('kept');
    expect(stored.header.get('Nats-Msg-Id')).toBe('up-1');
  });

  it('a publish awaiting its ack fails when the connection drops, not at its timeout', async () => {
    // A plain subscriber that never answers holds the ack back (no stream listens on this subject).
    const silent = nc.subscribe('spec.silent');
    await nc.flush();
    const t0 = performance.now();
    const pending = publishToStream(nc, 'spec.silent', sc.encode('held'), { msgID: 'held-1', timeout: 5_000 }).catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 200));
    await stopServer();
    const err = await pending;
    expect(err).toBeInstanceOf(MeshError);
    expect((err as MeshError).code).toBe('unavailable');
    expect(performance.now() - t0).toBeLessThan(1_500);
    silent.unsubscribe();
    await startServer();
    await reconnected();
  });
});
