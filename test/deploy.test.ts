/**
 * deploy/ checked without a Docker engine or a cluster: every YAML and JSON parses; the Dockerfile, the
 * compose file, the Kubernetes manifests (base and rendered overlays), the Prometheus config and alerts
 * and the Grafana dashboard hold their structural invariants; every variable they set is one the README
 * documents and every metric they query is one the code registers (or one listed below as coming).
 * `docker compose config` and `kubectl kustomize` run when the client is installed, else skip with a reason.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { SERVICE_NAMES, type ServiceName } from '@flywheel/contracts';
import * as configLib from '../libs/config/src';
import * as yaml from 'js-yaml';
import { repoRoot } from './support/processes';

/** Metrics the manifests use before any code exports them, and who will. */
const PENDING_METRICS: Record<string, string> = {};

const SERVICE_PORTS: Record<ServiceName, number> = { gateway: 8080, policy: 8081, reward: 8082, moderation: 8083, trainer: 8084 };

const deployDir = path.join(repoRoot, 'deploy');
const read = (rel: string) => readFileSync(path.join(repoRoot, rel), 'utf8');

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const obj = (v: unknown, what: string): Obj => {
  if (!isObj(v)) throw new Error(`${what} is not a mapping`);
  return v;
};
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const str = (v: unknown): string => (typeof v === 'string' ? v : typeof v === 'number' ? String(v) : '');
/** Follows a dotted path through mappings and lists (numeric segments index lists). */
const at = (v: unknown, dotted: string): unknown =>
  dotted.split('.').reduce<unknown>((cur, key) => (Array.isArray(cur) ? cur[Number(key)] : isObj(cur) ? cur[key] : undefined), v);

function yamlFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return yamlFiles(p);
    return /\.ya?ml$/.test(e.name) ? [p] : [];
  });
}

/** Variable names of the README's configuration table, and every *ENV_DOCS list of libs/config. */
function documentedEnv(): Set<string> {
  const readme = read('README.md');
  const section = readme.slice(readme.indexOf('## Configuration'), readme.indexOf('\n## ', readme.indexOf('## Configuration') + 5));
  const names = new Set([...section.matchAll(/^\| `([A-Z][A-Z0-9_]+)` \|/gm)].map((m) => m[1]!));
  for (const [key, value] of Object.entries(configLib)) {
    if (!key.endsWith('ENV_DOCS') || !Array.isArray(value)) continue;
    for (const doc of value as Array<{ name: string }>) names.add(doc.name);
  }
  return names;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return e.name === 'node_modules' || e.name === 'dist' ? [] : sourceFiles(p);
    return e.name.endsWith('.ts') && !e.name.endsWith('.spec.ts') ? [p] : [];
  });
}

/** Every `flywheel_*` string literal of apps/ and libs/ sources, plus prom-client's prefixed defaults. */
async function exportedMetrics(): Promise<Set<string>> {
  const names = new Set<string>();
  for (const file of [...sourceFiles(path.join(repoRoot, 'apps')), ...sourceFiles(path.join(repoRoot, 'libs'))]) {
    for (const m of readFileSync(file, 'utf8').matchAll(/['"`](flywheel_[a-z0-9_]+)['"`]/g)) names.add(m[1]!);
  }
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'flywheel_' });
  for (const metric of await registry.getMetricsAsJSON()) names.add(metric.name);
  return names;
}

/** flywheel_* names a PromQL expression reads, without histogram/summary suffixes. */
function metricsOf(expr: string, exported: Set<string>): string[] {
  return [...expr.matchAll(/\b(flywheel_[a-zA-Z0-9_]+)/g)].map(([, name]) => {
    const base = name!.replace(/_(bucket|sum|count)$/, '');
    return exported.has(name!) ? name! : base;
  });
}

/** Brackets balance (a cheap syntax check in place of promtool, which is not installed). */
function balanced(expr: string): boolean {
  const pairs: Record<string, string> = { ')': '(', ']': '[', '}': '{' };
  const stack: string[] = [];
  for (const ch of expr.replace(/"[^"]*"/g, '""')) {
    if ('([{'.includes(ch)) stack.push(ch);
    else if (ch in pairs && stack.pop() !== pairs[ch]) return false;
  }
  return stack.length === 0;
}

function hasClient(cmd: string, args: string[]): { ok: boolean; reason: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 20_000 });
  if (r.error) return { ok: false, reason: `${cmd} is not installed (${r.error.message})` };
  if (r.status !== 0) return { ok: false, reason: `\`${cmd} ${args.join(' ')}\` failed: ${(r.stderr || r.stdout).trim().split('\n')[0]}` };
  return { ok: true, reason: '' };
}

let env: Set<string>;
let metrics: Set<string>;

beforeAll(async () => {
  env = documentedEnv();
  metrics = await exportedMetrics();
});

describe('every YAML and JSON file under deploy/', () => {
  it('parses', () => {
    const files = yamlFiles(deployDir);
    expect(files.length).toBeGreaterThan(10);
    for (const file of files) {
      const docs = yaml.loadAll(readFileSync(file, 'utf8')).filter((d) => d !== null && d !== undefined);
      expect({ file, docs: docs.length > 0 }).toEqual({ file, docs: true });
    }
    expect(() => JSON.parse(read('deploy/grafana/dashboards/flywheel.json'))).not.toThrow();
  });

  it('the test reads the README table and the metrics the code registers', () => {
    expect(env.has('NATS_URL') && env.has('FLYWHEEL_MAX_WAITING') && env.has('FLYWHEEL_API_KEYS')).toBe(true);
    expect(metrics.has('flywheel_kv_cache_usage_perc') && metrics.has('flywheel_process_cpu_seconds_total')).toBe(true);
  });
});

describe('Dockerfile', () => {
  const dockerfile = read('deploy/Dockerfile');
  const stages = [...dockerfile.matchAll(/^FROM\s+(\S+)(?:\s+AS\s+(\S+))?/gim)].map((m) => ({ image: m[1]!, name: m[2] ?? '' }));

  it('builds in node:20-bookworm with a toolchain and runs from a slim stage', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    expect(stages[0]!.image).toBe('node:20-bookworm');
    expect(stages.at(-1)!.image).toMatch(/^node:20-bookworm-slim$/);
    for (const tool of ['g++', 'make', 'python3']) expect(dockerfile).toContain(tool);
    expect(dockerfile).toMatch(/npm ci\b/);
    expect(dockerfile).toMatch(/npm run build\b/);
    expect(dockerfile).toMatch(/^ENTRYPOINT \["flywheel"\]/m);
  });

  it('copies from the build stage only what the build produces, and from the context what exists', () => {
    const build = stages[0]!.name;
    for (const m of dockerfile.matchAll(/^COPY\s+(?:--chmod=\S+\s+)?(?:--from=(\S+)\s+)?(\S+)\s+\S+$/gm)) {
      const [, from, src] = m;
      if (src === '.') continue;
      if (from) expect(from).toBe(build);
      const rel = from ? src!.replace(/^\/app\//, '') : src!;
      // Build outputs (dist, native/build, the admin UI) exist here once `npm run build` ran.
      expect({ rel, exists: existsSync(path.join(repoRoot, rel)) }).toEqual({ rel, exists: true });
    }
  });

  it('keeps build output and state out of the context, but not what the image needs', () => {
    const ignore = read('deploy/Dockerfile.dockerignore').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
    for (const p of ['**/node_modules', 'dist', 'native/build', '.state', '.git']) expect(ignore).toContain(p);
    for (const needed of ['deploy', 'models', 'native', 'libs', 'apps', 'package-lock.json']) expect(ignore).not.toContain(needed);
  });

  it('the entry script runs each of the five services and refuses anything else', () => {
    const script = read('deploy/docker-entrypoint.sh');
    const served = /^\s*([a-z|]+)\)\s*$/m.exec(script)?.[1]?.split('|') ?? [];
    expect(served.sort()).toEqual([...SERVICE_NAMES].sort());
    for (const s of SERVICE_NAMES) expect(existsSync(path.join(repoRoot, 'dist', 'apps', s, 'src', 'main.js'))).toBe(true);
    const bad = spawnSync('sh', [path.join(deployDir, 'docker-entrypoint.sh'), 'nonsense'], { encoding: 'utf8' });
    expect(bad.status).toBe(64);
    expect(bad.stderr).toContain('usage');
    // Nothing listens on port 1: the health check fails instead of hanging.
    const health = spawnSync('sh', [path.join(deployDir, 'docker-entrypoint.sh'), 'healthcheck', '1'], { encoding: 'utf8', timeout: 10_000 });
    expect(health.status).toBe(1);
  });
});

describe('compose', () => {
  const compose = obj(yaml.load(read('deploy/compose.yaml')), 'compose.yaml');
  const services = obj(compose.services, 'services');
  const composeClient = hasClient('docker', ['compose', 'version']);

  it('runs NATS with JetStream on a volume, Redis, Postgres, Prometheus, Grafana and the five services', () => {
    for (const s of ['nats', 'redis', 'postgres', 'prometheus', 'grafana', ...SERVICE_NAMES]) expect(Object.keys(services)).toContain(s);
    const nats = obj(services.nats, 'nats');
    const command = arr(nats.command).map(str);
    expect(command).toContain('-js');
    const storeDir = command[command.indexOf('-sd') + 1];
    expect(arr(nats.volumes).map(str)).toContainEqual(expect.stringMatching(new RegExp(`^[a-z-]+:${storeDir}$`)));
  });

  it('declares every named volume and mounts only files that exist', () => {
    const declared = Object.keys(obj(compose.volumes, 'volumes'));
    for (const [name, svc] of Object.entries(services)) {
      for (const v of arr(obj(svc, name).volumes).map(str)) {
        const source = v.split(':')[0]!;
        if (source.startsWith('.')) expect({ v, exists: existsSync(path.join(deployDir, source)) }).toEqual({ v, exists: true });
        else expect(declared).toContain(source);
      }
    }
  });

  it.each(SERVICE_NAMES)('%s: its command, a /readyz health check on its port and documented variables', (name) => {
    const svc = obj(services[name], name);
    expect(svc.image ?? svc.build).toBeDefined();
    expect(arr(svc.command).map(str)).toEqual([name]);
    const environment = obj(svc.environment, `${name}.environment`);
    for (const key of Object.keys(environment)) expect({ key, documented: env.has(key) }).toEqual({ key, documented: true });
    const port = SERVICE_PORTS[name];
    expect(str(environment[`FLYWHEEL_${name.toUpperCase()}_PORT`])).toBe(String(port));
    expect(arr(at(svc, 'healthcheck.test')).map(str)).toEqual(['CMD', 'flywheel', 'healthcheck', String(port), '/readyz']);
    expect(str(environment.NATS_URL)).toBe('nats://nats:4222');
  });

  it('runs at least two policy replicas and gives the store a Postgres', () => {
    expect(Number(at(services.policy, 'deploy.replicas'))).toBeGreaterThanOrEqual(2);
    // Replicas must not publish a fixed host port (they would collide).
    expect(obj(services.policy, 'policy').ports).toBeUndefined();
    expect(str(at(services.gateway, 'environment.DATABASE_URL'))).toMatch(/^postgres:\/\/[^@]+@postgres:5432\//);
  });

  // Without a docker client the render is an it.skip whose name says why (the YAML checks above still run).
  (composeClient.ok ? it : it.skip)(`\`docker compose config\` accepts it${composeClient.ok ? '' : ` (skipped: ${composeClient.reason})`}`, () => {
    const r = spawnSync('docker', ['compose', '-f', path.join(deployDir, 'compose.yaml'), 'config', '--quiet'], { encoding: 'utf8', timeout: 60_000 });
    expect({ status: r.status, stderr: r.stderr }).toEqual({ status: 0, stderr: '' });
  });
});

/** Kubernetes objects of a kustomization, read from its files (resources recursively). */
function kustomizeSources(dir: string): Obj[] {
  const k = obj(yaml.load(readFileSync(path.join(dir, 'kustomization.yaml'), 'utf8')), `${dir}/kustomization.yaml`);
  return arr(k.resources).flatMap((r) => {
    const p = path.join(dir, str(r));
    if (existsSync(path.join(p, 'kustomization.yaml'))) return kustomizeSources(p);
    return yaml.loadAll(readFileSync(p, 'utf8')).filter(isObj);
  });
}

function checkManifests(docs: Obj[], label: string) {
  const kinds = (kind: string) => docs.filter((d) => d.kind === kind);
  const named = (kind: string, name: string) => kinds(kind).find((d) => at(d, 'metadata.name') === name);

  for (const d of docs) {
    expect({ label, apiVersion: typeof d.apiVersion, kind: typeof d.kind, name: typeof at(d, 'metadata.name') }).toEqual({
      label,
      apiVersion: 'string',
      kind: 'string',
      name: 'string',
    });
  }

  const workloads = [...kinds('Deployment'), ...kinds('StatefulSet')];
  for (const w of workloads) {
    const name = str(at(w, 'metadata.name'));
    const labels = obj(at(w, 'spec.template.metadata.labels'), `${name} pod labels`);
    for (const [k, v] of Object.entries(obj(at(w, 'spec.selector.matchLabels'), `${name} selector`))) expect(labels[k]).toBe(v);
    for (const c of arr(at(w, 'spec.template.spec.containers')).map((c) => obj(c, `${name} container`))) {
      const where = `${label} ${name}/${str(c.name)}`;
      expect({ where, image: str(c.image).length > 0 }).toEqual({ where, image: true });
      expect({ where, cpu: str(at(c, 'resources.requests.cpu')) !== '', memory: str(at(c, 'resources.requests.memory')) !== '' }).toEqual({
        where,
        cpu: true,
        memory: true,
      });
      expect({ where, readiness: isObj(c.readinessProbe), liveness: isObj(c.livenessProbe) }).toEqual({ where, readiness: true, liveness: true });
      const containerPorts = arr(c.ports).map((p) => obj(p, 'port'));
      for (const probe of [c.readinessProbe, c.livenessProbe, c.startupProbe].filter(isObj)) {
        const port = at(probe, 'httpGet.port') ?? at(probe, 'tcpSocket.port');
        if (port === undefined) continue;
        expect({ where, port, declared: containerPorts.some((p) => p.containerPort === port || p.name === port) }).toEqual({ where, port, declared: true });
      }
    }
  }

  for (const service of SERVICE_NAMES) {
    const d = named('Deployment', service);
    expect({ label, service, deployed: d !== undefined }).toEqual({ label, service, deployed: true });
    const c = obj(at(d, 'spec.template.spec.containers.0'), `${service} container`);
    const port = SERVICE_PORTS[service];
    expect(arr(c.args).map(str)).toEqual([service]);
    expect(at(c, 'ports.0.containerPort')).toBe(port);
    expect({ service, readiness: at(c, 'readinessProbe.httpGet') }).toEqual({ service, readiness: { path: '/readyz', port } });
    expect({ service, liveness: at(c, 'livenessProbe.httpGet') }).toEqual({ service, liveness: { path: '/livez', port } });
    const annotations = obj(at(d, 'spec.template.metadata.annotations'), `${service} annotations`);
    expect(annotations).toMatchObject({ 'prometheus.io/scrape': 'true', 'prometheus.io/port': String(port), 'prometheus.io/path': '/metrics' });

    // Every variable it gets is documented, and every ConfigMap/Secret it names exists.
    for (const e of arr(c.env).map((e) => obj(e, 'env'))) {
      expect({ service, name: e.name, documented: env.has(str(e.name)) }).toEqual({ service, name: e.name, documented: true });
      const ref = at(e, 'valueFrom.secretKeyRef');
      if (isObj(ref)) expect(obj(at(named('Secret', str(ref.name)), 'stringData'), `${str(ref.name)}`)[str(ref.key)]).toBeDefined();
    }
    for (const from of arr(c.envFrom).map((f) => obj(f, 'envFrom'))) {
      const [kind, ref] = isObj(from.configMapRef) ? ['ConfigMap', from.configMapRef] : ['Secret', from.secretRef];
      const source = named(kind, str(at(ref, 'name')));
      expect({ service, ref: at(ref, 'name'), exists: source !== undefined }).toEqual({ service, ref: at(ref, 'name'), exists: true });
      const keys = Object.keys(obj(kind === 'ConfigMap' ? at(source, 'data') : (at(source, 'stringData') ?? at(source, 'data')), 'data'));
      for (const key of keys) expect({ service, key, documented: env.has(key) }).toEqual({ service, key, documented: true });
    }
    const svc = named('Service', service);
    expect({ service, svc: svc !== undefined }).toEqual({ service, svc: true });
    expect(at(svc, 'spec.selector')).toEqual(at(d, 'spec.selector.matchLabels'));
  }

  // Keys come from Secrets; the gateway reads them.
  const gateway = obj(at(named('Deployment', 'gateway'), 'spec.template.spec.containers.0'), 'gateway');
  const secretRefs = arr(gateway.envFrom).map((f) => str(at(f, 'secretRef.name'))).filter(Boolean);
  const secretKeys = secretRefs.flatMap((n) => Object.keys(obj(at(named('Secret', n), 'stringData'), n)));
  expect(secretKeys).toEqual(expect.arrayContaining(['FLYWHEEL_API_KEYS', 'FLYWHEEL_ADMIN_KEYS']));
  for (const cm of kinds('ConfigMap')) {
    for (const key of Object.keys(obj(cm.data, 'data'))) expect(key).not.toMatch(/KEYS|PASSWORD|DATABASE_URL/);
  }

  // The policy scales horizontally, never below two.
  const policy = named('Deployment', 'policy');
  expect(Number(at(policy, 'spec.replicas'))).toBeGreaterThanOrEqual(2);
  const hpa = named('HorizontalPodAutoscaler', 'policy');
  expect(at(hpa, 'spec.scaleTargetRef')).toMatchObject({ kind: 'Deployment', name: 'policy' });
  expect(Number(at(hpa, 'spec.minReplicas'))).toBeGreaterThanOrEqual(2);
  expect(Number(at(hpa, 'spec.maxReplicas'))).toBeGreaterThan(Number(at(hpa, 'spec.minReplicas')));

  // NATS: 3 JetStream nodes routed to each other through the headless Service, each on its own volume.
  const nats = named('StatefulSet', 'nats');
  expect(at(nats, 'spec.replicas')).toBe(3);
  const headless = str(at(nats, 'spec.serviceName'));
  expect(at(named('Service', headless), 'spec.clusterIP')).toBe('None');
  expect(at(nats, 'spec.volumeClaimTemplates.0.metadata.name')).toBe('data');
  const configVolume = arr(at(nats, 'spec.template.spec.volumes')).map((v) => obj(v, 'volume')).find((v) => isObj(v.configMap));
  const conf = str(obj(at(named('ConfigMap', str(at(configVolume, 'configMap.name'))), 'data'), 'nats config')['nats.conf']);
  expect(conf).toMatch(/jetstream\s*{[^}]*store_dir:\s*\/data/);
  const routes = [...conf.matchAll(/nats:\/\/([a-z0-9-]+)\.([a-z0-9-]+):6222/g)];
  expect(routes.map((r) => r[1])).toEqual(['nats-0', 'nats-1', 'nats-2']);
  for (const r of routes) expect(r[2]).toBe(headless);
  expect(str(at(named('ConfigMap', 'flywheel-config'), 'data.NATS_URL'))).toBe('nats://nats:4222');
  expect(named('Service', 'nats')).toBeDefined();

  // A ServiceMonitor, where there is one (prod), selects the five services' Services by their port name.
  const monitor = kinds('ServiceMonitor')[0];
  if (label === 'prod') expect(monitor).toBeDefined();
  if (monitor === undefined) return;
  expect(arr(at(monitor, 'spec.selector.matchExpressions.0.values')).map(str).sort()).toEqual([...SERVICE_NAMES].sort());
  for (const service of SERVICE_NAMES) expect(at(named('Service', service), 'spec.ports.0.name')).toBe(at(monitor, 'spec.endpoints.0.port'));
}

describe('Kubernetes manifests', () => {
  const k8s = path.join(deployDir, 'k8s');
  const kubectl = hasClient('kubectl', ['version', '--client']);

  it.each(['base', 'overlays/dev', 'overlays/prod'])('%s: every resource and patch file exists', (dir) => {
    const k = obj(yaml.load(readFileSync(path.join(k8s, dir, 'kustomization.yaml'), 'utf8')), dir);
    const files = [...arr(k.resources).map(str), ...arr(k.patches).map((p) => str(at(p, 'path'))).filter(Boolean)];
    expect(files.length).toBeGreaterThan(0);
    for (const f of files) expect({ f, exists: existsSync(path.join(k8s, dir, f)) }).toEqual({ f, exists: true });
  });

  it('base: every workload, service, config, secret, the policy HPA and the NATS cluster', () => {
    checkManifests(kustomizeSources(path.join(k8s, 'base')), 'base');
  });

  const renderName = `overlay %s renders with \`kubectl kustomize\` and keeps the invariants${kubectl.ok ? '' : ` (skipped: ${kubectl.reason})`}`;
  (kubectl.ok ? it.each(['dev', 'prod']) : it.skip.each(['dev', 'prod']))(renderName, (overlay) => {
    const r = spawnSync('kubectl', ['kustomize', path.join(k8s, 'overlays', overlay)], { encoding: 'utf8', timeout: 60_000 });
    expect({ status: r.status, stderr: r.stderr }).toEqual({ status: 0, stderr: '' });
    const docs = yaml.loadAll(r.stdout).filter(isObj);
    checkManifests(docs, overlay);
    const namespaced = docs.filter((d) => d.kind !== 'Namespace');
    const namespaces = new Set(namespaced.map((d) => at(d, 'metadata.namespace')));
    expect([...namespaces]).toEqual([overlay === 'prod' ? 'flywheel' : 'flywheel-dev']);
    const images = docs.flatMap((d) => arr(at(d, 'spec.template.spec.containers')).map((c) => str(at(c, 'image'))));
    expect(images).not.toContain('flywheel');
  });
});

describe('Prometheus', () => {
  const config = obj(yaml.load(read('deploy/prometheus/prometheus.yml')), 'prometheus.yml');
  const alerts = read('deploy/prometheus/alerts.yml');
  const rules = arr(obj(yaml.load(alerts), 'alerts.yml').groups).flatMap((g) => arr(at(g, 'rules')).map((r) => obj(r, 'rule')));

  it('scrapes every service on its port and loads the alert rules', () => {
    const jobs = arr(config.scrape_configs).map((j) => obj(j, 'job'));
    for (const service of SERVICE_NAMES) {
      const job = jobs.find((j) => j.job_name === `flywheel-${service}`);
      expect(at(job, 'dns_sd_configs.0')).toMatchObject({ names: [service], port: SERVICE_PORTS[service] });
    }
    for (const f of arr(config.rule_files).map(str)) expect(existsSync(path.join(deployDir, 'prometheus', path.basename(f)))).toBe(true);
  });

  it('each rule has a name, a balanced expression, a severity and a summary', () => {
    expect(rules.length).toBeGreaterThanOrEqual(5);
    expect(new Set(rules.map((r) => r.alert)).size).toBe(rules.length);
    for (const r of rules) {
      expect({ alert: r.alert, ok: typeof r.alert === 'string' && balanced(str(r.expr)) }).toEqual({ alert: r.alert, ok: true });
      expect(['critical', 'warning', 'info']).toContain(at(r, 'labels.severity'));
      expect(str(at(r, 'annotations.summary')).length).toBeGreaterThan(0);
    }
  });

  it('covers service down, KV cache, TTFT p99, PPO KL and feedback consumer lag (its real pending gauge)', () => {
    const exprs = rules.map((r) => str(r.expr));
    expect(exprs.some((e) => /\bup\{job=~"flywheel-\.\*"\} == 0/.test(e))).toBe(true);
    expect(exprs.some((e) => e.includes('flywheel_kv_cache_usage_perc'))).toBe(true);
    expect(exprs.some((e) => /histogram_quantile\(0\.99,.*flywheel_time_to_first_token_seconds_bucket/.test(e))).toBe(true);
    expect(exprs.some((e) => e.includes('flywheel_ppo_kl'))).toBe(true);
    expect(exprs.some((e) => e.includes('flywheel_store_consumer_pending{stream="FEEDBACK"}'))).toBe(true);
  });

  it('queries only metrics the code registers, or coming ones named in a comment', () => {
    const comments = alerts.split('\n').filter((l) => l.trim().startsWith('#')).join('\n');
    for (const r of rules) {
      for (const name of metricsOf(str(r.expr), metrics)) {
        const known = metrics.has(name) || (name in PENDING_METRICS && comments.includes(name));
        expect({ alert: r.alert, name, known }).toEqual({ alert: r.alert, name, known: true });
      }
    }
  });
});

describe('Grafana', () => {
  const dashboard = obj(JSON.parse(read('deploy/grafana/dashboards/flywheel.json')), 'dashboard');
  const panels = arr(dashboard.panels).map((p) => obj(p, 'panel'));
  const graphs = panels.filter((p) => p.type !== 'row');
  const datasources = obj(yaml.load(read('deploy/grafana/provisioning/datasources/prometheus.yaml')), 'datasources');
  const providers = obj(yaml.load(read('deploy/grafana/provisioning/dashboards/flywheel.yaml')), 'providers');

  it('is a dashboard with unique panel ids on a 24-column grid', () => {
    expect(typeof dashboard.uid).toBe('string');
    expect(typeof dashboard.title).toBe('string');
    const ids = panels.map((p) => p.id);
    expect(ids.every((id) => Number.isInteger(id))).toBe(true);
    expect(new Set(ids).size).toBe(ids.length);
    for (const p of panels) {
      const g = obj(p.gridPos, `${str(p.title)} gridPos`);
      expect(Number(g.x) + Number(g.w)).toBeLessThanOrEqual(24);
    }
  });

  it('queries the provisioned datasource, which Prometheus of the compose file serves', () => {
    const ds = obj(at(datasources, 'datasources.0'), 'datasource');
    expect(ds.url).toBe('http://prometheus:9090');
    for (const p of graphs) {
      expect(at(p, 'datasource.uid')).toBe(ds.uid);
      const targets = arr(p.targets).map((t) => obj(t, 'target'));
      expect({ panel: p.title, targets: targets.length > 0 }).toEqual({ panel: p.title, targets: true });
      for (const t of targets) {
        expect(at(t, 'datasource.uid')).toBe(ds.uid);
        expect({ panel: p.title, balanced: balanced(str(t.expr)) }).toEqual({ panel: p.title, balanced: true });
      }
    }
    const compose = read('deploy/compose.yaml');
    const providerPath = str(at(providers, 'providers.0.options.path'));
    expect(compose).toContain(`./grafana/dashboards:${providerPath}:ro`);
  });

  it('every metric a panel queries is registered by the code, or coming and said so in its description', () => {
    for (const p of graphs) {
      for (const t of arr(p.targets)) {
        for (const name of metricsOf(str(at(t, 'expr')), metrics)) {
          const known = metrics.has(name) || (name in PENDING_METRICS && str(p.description).length > 0);
          expect({ panel: p.title, name, known }).toEqual({ panel: p.title, name, known: true });
        }
      }
    }
  });

  it('has the serving, moderation, flywheel and training panels', () => {
    const queried = graphs.map((p) => arr(p.targets).map((t) => str(at(t, 'expr'))).join(' ')).join(' ');
    for (const name of [
      'flywheel_time_to_first_token_seconds_bucket',
      'flywheel_inter_token_latency_seconds_bucket',
      'flywheel_generation_tokens_total',
      'flywheel_num_requests_running',
      'flywheel_num_requests_waiting',
      'flywheel_kv_cache_usage_perc',
      'flywheel_num_preemptions_total',
      'flywheel_moderation_checks_total',
      'flywheel_feedback_accepted_total',
      'flywheel_review_backlog',
      'flywheel_store_consumer_pending',
      'flywheel_ppo_reward_mean',
      'flywheel_ppo_kl',
      'flywheel_ppo_clip_fraction',
    ]) {
      expect({ name, queried: queried.includes(name) }).toEqual({ name, queried: true });
    }
    const rows = panels.filter((p) => p.type === 'row').map((p) => p.title);
    expect(rows).toEqual(expect.arrayContaining(['Serving', 'Moderation', 'Data flywheel', 'Training']));
  });
});
