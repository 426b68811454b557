import { Registry } from 'prom-client';
import type { ActiveModelEntry } from '@flywheel/contracts';
import { ServedVersions } from './served-versions';

interface FakeSlot {
  version: string;
}

const entry = (version: string): ActiveModelEntry => ({
  version,
  checkpoint: { object: version, sha256: '0'.repeat(64), bytes: 0 },
  parent: null,
  runId: null,
  exports: [],
  promotedAt: new Date().toISOString(),
  promotedBy: 'spec',
  reason: 'spec',
  action: 'promote',
});

const quiet = { log: () => undefined, warn: () => undefined, error: () => undefined };

/** A KV holding `active` whose watch never delivers; `broken` versions fail to load. */
function setup(active: string | null, broken: string[] = []) {
  const registry = new Registry();
  const released: string[] = [];
  const versions = new ServedVersions<FakeSlot>({
    role: 'reward',
    registry,
    logger: quiet,
    source: {
      current: async () => (active ? entry(active) : null),
      async *watch(signal) {
        await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
      },
      fetch: async (e) => e.version,
    },
    load: async (e) => {
      if (broken.includes(e.version)) throw new Error(`sha256 mismatch for ${e.version}`);
      return { version: e.version };
    },
    release: (slot) => void released.push(slot.version),
  });
  const metric = async (name: string) => registry.getSingleMetricAsString(name);
  return { versions, released, metric };
}

describe('ServedVersions', () => {
  it('boots on the KV entry when it loads, else on the fallback, else on nothing', async () => {
    const kv = setup('v1');
    expect(await kv.versions.start(async () => ({ version: 'configured' }), 'configured')).toEqual({ version: 'v1' });
    const broken = setup('v1', ['v1']);
    expect(await broken.versions.start(async () => ({ version: 'configured' }), 'configured')).toEqual({ version: 'configured' });
    const none = setup(null);
    expect(await none.versions.start(async () => null, 'nothing')).toBeNull();
    expect(none.versions.active).toBeNull();
    await Promise.all([kv, broken, none].map((s) => s.versions.close()));
  });

  it('releases a swapped-out version only after its last pinned piece of work', async () => {
    const { versions, released, metric } = setup('v1');
    await versions.start(async () => null, 'nothing');
    const a = versions.pin()!;
    const b = versions.pin()!;
    expect(await versions.swap(entry('v2'))).toBe(true);
    expect(versions.active?.version).toBe('v2');
    expect(versions.live().map((s) => s.version)).toEqual(['v1', 'v2']);
    versions.unpin(a);
    await Promise.resolve();
    expect(released).toEqual([]);
    versions.unpin(b);
    await Promise.resolve();
    expect(released).toEqual(['v1']);
    expect(versions.live().map((s) => s.version)).toEqual(['v2']);
    expect(await metric('flywheel_reward_swaps_total')).toMatch(/outcome="ok"} 1/);
    expect(await metric('flywheel_reward_active_version')).toMatch(/version="v2"} 1/);
    await versions.close();
    expect(released).toEqual(['v1', 'v2']);
  });

  it('refuses a version that does not load and keeps the old one', async () => {
    const { versions, released, metric } = setup('v1', ['bad']);
    await versions.start(async () => null, 'nothing');
    expect(await versions.swap(entry('bad'))).toBe(false);
    expect(versions.active?.version).toBe('v1');
    expect(released).toEqual([]);
    expect(await metric('flywheel_reward_swaps_total')).toMatch(/outcome="failed"} 1/);
    await versions.close();
  });

  it('releases everything at close, once, even what is still pinned', async () => {
    const { versions, released } = setup('v1');
    await versions.start(async () => null, 'nothing');
    const pinned = versions.pin()!;
    await versions.swap(entry('v2'));
    await versions.close();
    versions.unpin(pinned);
    await Promise.resolve();
    expect(released.sort()).toEqual(['v1', 'v2']);
    expect(versions.pin()).toBeNull();
  });
});
