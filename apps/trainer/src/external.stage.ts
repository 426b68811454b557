/**
 * The `external` policy stage of a loop run: instead of training in-process it writes the run's hand-off folder
 * (external.handoff.ts) under <state>/handoff/<loop run id>, shows the loop as waiting (the job's progress message, a
 * running child run `<loop run id>-external`), and polls the checkpoint store until a policy version published with
 * the loop run's id arrives (`flywheel models publish --run <id>`) or the wait ends. The loop then evaluates and
 * promotes that version as it does its own candidates. A loop job run again (trainer restart) rewrites the folder,
 * keeps the first deadline and picks up a version published meanwhile. Not the eval (the loop's eval stage).
 */
import path from 'node:path';
import { Logger } from '@nestjs/common';
import { UnrecoverableError } from 'bullmq';
import { externalCandidateVersion, ppoConfigSchema, type LoopJobData, type PublishedModel } from '@flywheel/contracts';
import type { TrainerConfig } from '@flywheel/config';
import { listPublished, type MeshConnection } from '@flywheel/mesh';
import type { Prompt } from '@flywheel/rl';
import { recordPublishedVersion } from '@flywheel/store';
import { planHandoff, readHandoffManifest, writeHandoff } from './external.handoff';
import { readJobPrompts } from './prompt-set.reader';
import type { QueueJob } from './queue.processor';
import { RunRecorder } from './run.recorder';
import type { TrainerStore } from './trainer.store';

/** The loop run's hand-off folder. */
export const handoffDirOf = (stateDir: string, loopRunId: string): string => path.resolve(stateDir, 'handoff', loopRunId);

/** The external stage's child run (it succeeds when the checkpoint arrives). */
export const externalStageRunId = (loopRunId: string): string => `${loopRunId}-external`;

/** Why a published version cannot be evaluated as a policy (the stage keeps waiting for another), or null. */
export function unusableCheckpoint(p: Pick<PublishedModel, 'files'>): string | null {
  const names = p.files.map((f) => f.name);
  if (!names.includes('config.json')) return 'no config.json';
  if (!names.some((n) => n.endsWith('.safetensors'))) return 'no .safetensors weights (save with safe_serialization, the transformers default)';
  if (!names.includes('tokenizer.json')) return 'no tokenizer.json (save the tokenizer with the model)';
  return null;
}

export interface ExternalStageInput {
  job: QueueJob;
  loopRunId: string;
  data: LoopJobData;
  base: { version: string; dir: string };
  reward: { version: string; dir: string };
  exportIds: string[];
  /** True once the trainer shuts down: the wait then stops without failing the run (another trainer resumes it). */
  stopping: () => boolean;
}

export interface ExternalCandidate {
  versionId: string;
  heldoutPrompts: Prompt[];
}

const errorText = (err: unknown): string => (err instanceof Error ? err.message : String(err));
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export class ExternalStage {
  private readonly logger = new Logger('external');

  constructor(
    private readonly config: TrainerConfig,
    private readonly store: TrainerStore,
    private readonly mesh: MeshConnection,
  ) {}

  async run(o: ExternalStageInput): Promise<ExternalCandidate> {
    const { loopRunId, data } = o;
    // The same split and seed as an in-process policy stage, so the eval's held-out prompts are the same kind of set.
    const gen = ppoConfigSchema.parse(data.ppo);
    const prompts = await readJobPrompts(this.store, data.data, data.heldout, gen.seed);
    // Checked before the hand-off, not days later at the eval stage.
    if (prompts.heldout.length === 0) throw new UnrecoverableError('no held-out prompts for the eval gate (set heldout > 0 and give at least two prompts): nothing handed off');
    const preference = await this.store.trainingText(data.data, 'preference');
    const sft = data.sft ? await this.store.trainingText(data.sft.data, 'sft') : null;
    const dir = handoffDirOf(this.config.stateDir, loopRunId);
    const earlier = readHandoffManifest(dir);
    const createdAt = earlier?.created_at ?? new Date().toISOString();
    const waitUntil = earlier?.wait_until ?? new Date(Date.parse(createdAt) + data.external.waitMs).toISOString();
    const plan = planHandoff({
      loopRunId,
      base: o.base,
      reward: o.reward,
      preference,
      sft,
      trainPrompts: prompts.train.map((prompt, i) => ({ prompt, reference: prompts.references[i] })),
      heldout: prompts.heldout,
      sampling: { maxNewTokens: gen.maxNewTokens, seed: gen.seed },
      publish: { version: externalCandidateVersion(loopRunId), natsUrl: this.config.nats.servers[0] ?? 'nats://127.0.0.1:4222' },
      createdAt,
      waitUntil,
    });
    writeHandoff(dir, plan);

    const recorder = new RunRecorder(this.store, externalStageRunId(loopRunId));
    const rows = Object.fromEntries(Object.entries(plan.manifest.data).map(([k, d]) => [`${k}_rows`, d.rows]));
    await recorder.start('external', { parentRunId: loopRunId, baseVersion: o.base.version, exportId: o.exportIds[0] ?? null, stage: 'external', config: { handoffDir: dir, waitUntil, jobId: o.job.id } });
    await recorder.patch({ metrics: { handoff_dir: dir, wait_until: waitUntil, heldout_prompts: prompts.heldout.length, publish_command: plan.manifest.publish.command, ...rows } });
    const message = `waiting for a checkpoint trained from ${dir} and published with \`flywheel models publish --run ${loopRunId} --dir <output>\` (until ${waitUntil})`;
    await o.job.updateProgress({ stage: 'external', message });
    this.logger.log(`${loopRunId}: hand-off written (${Object.keys(plan.manifest.commands).join(', ')}); ${message}`);

    try {
      const published = await this.waitForCheckpoint(loopRunId, Date.parse(waitUntil), data.external.pollMs, o.stopping, dir);
      // The candidate's row in the store, as the gateway's lineage follower writes it (idempotent; either may be first),
      // so the eval's verdict has a row to land on even where no gateway runs.
      await this.store
        .use((db) => recordPublishedVersion(db, { version: published.version, role: 'policy', parent: published.parent, runId: published.runId, exports: published.exports, checkpoint: published.checkpoint.object, sha256: published.checkpoint.sha256 }))
        .catch((err: unknown) => this.logger.warn(`${loopRunId}: cannot record ${published.version} in the store: ${errorText(err)}`));
      const waitedS = Math.round((Date.parse(published.publishedAt) - Date.parse(createdAt)) / 1000);
      await recorder.patch({ status: 'succeeded', metrics: { candidate_version: published.version, published_at: published.publishedAt, waited_s: waitedS } });
      this.logger.log(`${loopRunId}: ${published.version} published ${waitedS} s after the hand-off; on to the eval`);
      return { versionId: published.version, heldoutPrompts: prompts.heldout };
    } catch (err) {
      await recorder.patch({ status: 'failed', error: errorText(err) });
      throw err;
    }
  }

  /**
   * The first usable policy version published with `loopRunId` as its run id (oldest first). Store outages are
   * waited out; versions that cannot be a policy are reported once and skipped. Past `deadline` the run fails for good.
   */
  private async waitForCheckpoint(loopRunId: string, deadline: number, pollMs: number, stopping: () => boolean, dir: string): Promise<PublishedModel> {
    const skipped = new Set<string>();
    let lastError = '';
    for (;;) {
      // A trainer shutting down abandons the wait (the loop worker closes without it): the job is picked up again.
      if (stopping()) return new Promise<never>(() => undefined);
      try {
        const nc = await this.mesh.connected;
        for (const p of await listPublished(nc)) {
          if (p.runId !== loopRunId || p.role !== 'policy' || skipped.has(p.version)) continue;
          const problem = unusableCheckpoint(p);
          if (problem === null) return p;
          skipped.add(p.version);
          this.logger.warn(`${loopRunId}: ignoring ${p.version}, published for this run: ${problem}; still waiting`);
        }
        lastError = '';
      } catch (err) {
        const text = errorText(err);
        if (text !== lastError) this.logger.warn(`${loopRunId}: cannot read the checkpoint store (${text}); retrying`);
        lastError = text;
      }
      if (Date.now() >= deadline) {
        throw new UnrecoverableError(`no checkpoint was published with --run ${loopRunId} by ${new Date(deadline).toISOString()} (hand-off in ${dir})`);
      }
      await sleep(Math.min(pollMs, Math.max(0, deadline - Date.now()) + 1));
    }
  }
}
