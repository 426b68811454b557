/**
 * Helpers for the gateway's end-to-end tests and benchmark: a private nats-server with JetStream (so
 * no other process on this machine's shared NATS serves or steals our policy requests), and the
 * gateway + policy processes booted against it, waiting until the model answers.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort, run, serviceEntry, stop, waitFor, type Running } from './support/processes';

export interface PrivateNats {
  url: string;
  stop(): Promise<void>;
}

export async function startPrivateNats(): Promise<PrivateNats> {
  const port = await freePort();
  const dir = mkdtempSync(path.join(tmpdir(), 'flywheel-nats-'));
  const proc = run('nats-server', ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', dir], {});
  const url = `nats://127.0.0.1:${port}`;
  await waitFor(async () => (/Server is ready/.test(proc.output()) ? true : undefined), 10_000, 'nats-server ready');
  return {
    url,
    stop: async () => {
      await stop(proc);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface GatewayMesh {
  gatewayUrl: string;
  policyMetricsUrl: string;
  env: Record<string, string>;
  gateway: Running;
  policy: Running;
  stop(): Promise<void>;
}

/** Boots policy + gateway on free ports; resolves once /v1/models answers 200 with `apiKey`. */
export async function startGatewayMesh(natsUrl: string, apiKey: string, extraEnv: Record<string, string>): Promise<GatewayMesh> {
  const env: Record<string, string> = {
    NATS_URL: natsUrl,
    FLYWHEEL_GATEWAY_PORT: String(await freePort()),
    FLYWHEEL_POLICY_PORT: String(await freePort()),
    FLYWHEEL_LOG_LEVEL: 'warn',
    ...extraEnv,
  };
  const policy = run(process.execPath, [serviceEntry('policy')], env);
  const gateway = run(process.execPath, [serviceEntry('gateway')], env);
  const gatewayUrl = `http://127.0.0.1:${env.FLYWHEEL_GATEWAY_PORT}`;
  try {
    const exited = Promise.race([policy.exited, gateway.exited]).then((code) => {
      throw new Error(`a service exited during boot (code ${code})`);
    });
    const answering = waitFor(
      async () => {
        const res = await fetch(`${gatewayUrl}/v1/models`, { headers: { authorization: `Bearer ${apiKey}` }, signal: AbortSignal.timeout(3000) });
        return res.status === 200 ? true : undefined;
      },
      90_000,
      'gateway answering /v1/models from the policy',
    );
    exited.catch(() => undefined);
    await Promise.race([answering, exited]);
  } catch (err) {
    await Promise.all([stop(policy), stop(gateway)]);
    throw new Error(`${String(err)}\n--- policy ---\n${policy.output().slice(-2000)}\n--- gateway ---\n${gateway.output().slice(-2000)}`);
  }
  return {
    gatewayUrl,
    policyMetricsUrl: `http://127.0.0.1:${env.FLYWHEEL_POLICY_PORT}/metrics`,
    env,
    gateway,
    policy,
    stop: async () => {
      await Promise.all([stop(gateway), stop(policy)]);
    },
  };
}

/** Value of an unlabelled-or-single-series Prometheus gauge/counter in a /metrics text. */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-zA-Z_:][\w:]*)(\{([^}]*)\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries([...(m[3] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[4]);
  }
  return undefined;
}
