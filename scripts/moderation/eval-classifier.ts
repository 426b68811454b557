/**
 * Held-out evaluation of a moderation model: by default the version the mesh serves (the `moderation` entry of the
 * `models` KV on NATS_URL, fetched from the checkpoint store), else the configured or committed files; or the
 * folder given with --model-dir, or the committed artifact with --builtin. The same seeded split the trainer used
 * (the artifact's seed), the classifier alone at its per-head thresholds and the layered moderator under the
 * default policy, overall and per language, as one JSON object on stdout.
 * Run: npm run eval:moderation -- [--json] [--direction input|output] [--model-dir DIR | --builtin] [--set DIR]
 *      (--set DIR judges every example of a labelled folder instead of the seed set's held-out split, e.g.
 *      libs/moderation/data/fresh, texts written apart from the seed set and never trained on)
 *      (--json is accepted for symmetry with the benchmarks: output is always JSON)
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { connect } from 'nats';
import { fetchCheckpoint, readActive } from '../../libs/mesh/src';
import { evaluate, loadModerator, loadSeedSet, moderationDataDir, splitSeedSet } from '../../libs/moderation/src';

/** How long the default waits for NATS before it evaluates the configured files instead. */
const NATS_WAIT_MS = 2_000;

function stringArg(name: string): string | null {
  const i = process.argv.indexOf(name);
  if (i < 0) return null;
  const v = process.argv[i + 1];
  if (v === undefined || v.startsWith('--')) throw new Error(`${name} needs a value`);
  return v;
}

interface Target {
  modelDir: string | null;
  /** active: the mesh's active version; dir: --model-dir; built-in: the configured or committed files. */
  source: 'active' | 'dir' | 'built-in';
  version: string | null;
  cleanup(): void;
}

/** The active moderation version's files in a temporary folder, or null when NATS or the KV entry is not there. */
async function activeVersion(): Promise<Target | null> {
  const url = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';
  const nc = await connect({ servers: url.split(','), name: 'eval-moderation', timeout: NATS_WAIT_MS, reconnect: false }).catch(() => null);
  if (!nc) return null;
  try {
    const entry = await readActive(nc, 'moderation').catch(() => null);
    if (!entry) return null;
    const cache = mkdtempSync(path.join(tmpdir(), 'flywheel-eval-moderation-'));
    const dir = await fetchCheckpoint(nc, entry.checkpoint, cache);
    return { modelDir: dir, source: 'active', version: entry.version, cleanup: () => rmSync(cache, { recursive: true, force: true }) };
  } finally {
    await nc.close();
  }
}

async function target(): Promise<Target> {
  const dir = stringArg('--model-dir');
  if (dir !== null) return { modelDir: path.resolve(dir), source: 'dir', version: null, cleanup: () => undefined };
  const configured: Target = { modelDir: process.env.FLYWHEEL_MODERATION_MODEL_DIR ?? null, source: 'built-in', version: null, cleanup: () => undefined };
  if (process.argv.includes('--builtin')) return configured;
  return (await activeVersion()) ?? configured;
}

async function main(): Promise<void> {
  const t = await target();
  try {
    const moderator = loadModerator({ modelDir: t.modelDir });
    const seed = moderator.classifier.meta.seed;
    // --set DIR: every example of a labelled set kept out of training altogether (data/fresh), not the seed split.
    const setDir = stringArg('--set');
    const test = setDir !== null ? loadSeedSet(setDir) : splitSeedSet(loadSeedSet(path.join(moderationDataDir(), 'seed')), seed).test;
    const direction = stringArg('--direction') === 'output' ? 'output' : 'input';
    const thresholds = Object.fromEntries(moderator.classifier.heads.map((h, i) => [h, moderator.classifier.thresholds[i]]));
    const report = { model: moderator.modelId, source: t.source, version: t.version, modelDir: t.modelDir ?? 'built-in', set: setDir ?? 'seed held-out split', seed, direction, thresholds, ...evaluate(moderator, test, direction) };
    process.stdout.write(`${JSON.stringify(report)}\n`);
  } finally {
    t.cleanup();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`eval:moderation: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
