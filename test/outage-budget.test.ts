/**
 * A chat completion while NATS is down answers 503 + Retry-After after ONE resend budget (RECONNECT_RETRY_MS), not
 * one per mesh call it makes (the prompt check, then the generation): the budget belongs to the request. Real
 * gateway and policy on a private nats-server that this test stops.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { RECONNECT_RETRY_MS } from '@flywheel/mesh';
import { startGatewayMesh, startPrivateNats, type GatewayMesh, type PrivateNats } from './gateway.support';
import { freePort, run, serviceEntry, stop, waitFor, type Running } from './support/processes';

jest.setTimeout(120_000);

const KEY = 'sk-outage-budget-test-01';
let nats: PrivateNats;
let mesh: GatewayMesh;
let moderation: Running;
let stateDir: string;

beforeAll(async () => {
  stateDir = mkdtempSync(path.join(tmpdir(), 'flywheel-outage-'));
  nats = await startPrivateNats();
  // The moderation service answers before the outage, so the prompt check is one of the calls that waits.
  moderation = run(process.execPath, [serviceEntry('moderation')], { NATS_URL: nats.url, FLYWHEEL_MODERATION_PORT: String(await freePort()), FLYWHEEL_LOG_LEVEL: 'warn' });
  mesh = await startGatewayMesh(nats.url, KEY, { FLYWHEEL_API_KEYS: KEY, FLYWHEEL_STATE_DIR: stateDir, FLYWHEEL_RATE_LIMIT_RPM: '0' });
  await waitFor(async () => ((await metric('source="service"')) > 0 ? true : ((await chat()).status, undefined)), 30_000, 'prompts checked by the moderation service');
});

afterAll(async () => {
  await mesh?.stop();
  if (moderation) await stop(moderation);
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
});

const chat = () =>
  fetch(`${mesh.gatewayUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` },
    body: JSON.stringify({ model: 'stories260K', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 4 }),
  });

async function metric(label: string): Promise<number> {
  const text = await (await fetch(`${mesh.gatewayUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith('flywheel_gateway_moderation_checks_total') && l.includes('direction="input"') && l.includes(label));
  return line ? Number(line.split(' ').pop()) : 0;
}

it('answers 503 with Retry-After within one resend budget', async () => {
  expect((await chat()).status).toBe(200); // warm: the policy's info is cached
  await nats.stop();
  const timings: number[] = [];
  for (let i = 0; i < 3; i++) {
    const t0 = performance.now();
    const res = await chat();
    timings.push(performance.now() - t0);
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).not.toBeNull();
    const body = (await res.json()) as { error: { type: string } };
    expect(body.error.type).toBe('server_error');
  }
  // One budget plus the work around it; two budgets (the old behaviour) would be over 2 × RECONNECT_RETRY_MS.
  for (const ms of timings) expect(ms).toBeLessThan(RECONNECT_RETRY_MS * 1.6);
  expect(Math.max(...timings)).toBeGreaterThan(RECONNECT_RETRY_MS * 0.5); // it did ride the budget out
});
