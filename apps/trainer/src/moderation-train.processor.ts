/**
 * The BullMQ worker of the `moderation-train` queue: retrains the moderation classifier on the seed set plus the
 * reviewers' data (a `moderation` export: labels and approved flags), judges the candidate and the active version
 * on one held-out split (seed text and reviewed text the candidate never saw), registers and publishes the
 * candidate as a `moderation` version and promotes it when it beats the active one there (moderation replicas and
 * gateways hot-swap it from the models KV). Epochs are the job's progress and the run's curves. Training takes
 * seconds, so a job whose trainer died starts over. The classifier itself is libs/moderation.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Inject, Injectable } from '@nestjs/common';
import {
  moderationExportLineSchema,
  moderationTrainJobDataSchema,
  QUEUES,
  type ModerationTrainJobData,
  type ModerationTrainJobResult,
  type ModerationTrainProgress,
} from '@flywheel/contracts';
import type { TrainerConfig } from '@flywheel/config';
import { fetchCheckpoint, MeshConnection, promoteVersion, readActive } from '@flywheel/mesh';
import {
  closeLabels,
  DEFAULT_TRAIN_OPTIONS,
  judgeModerationCandidate,
  loadModerator,
  loadSeedSet,
  moderationDataDir,
  splitSeedSet,
  trainClassifierYielding,
  type SeedExample,
} from '@flywheel/moderation';
import { markVersionRejected, recordVersionEval } from '@flywheel/store';
import { UnrecoverableError } from 'bullmq';
import { TrainingJobProcessor, type PreparedTraining, type QueueJob, type TrainingTarget } from './queue.processor';
import { TRAINER_CONFIG } from './trainer.queues';
import { TrainerStore } from './trainer.store';

interface Trained {
  examples: number;
  reviewed: number;
  heldout: SeedExample[];
}

/** Reviewed export lines as labelled examples (language unknown; a cleared verdict is hard-benign text). */
export function reviewedExamples(text: string, source: string): SeedExample[] {
  const out: SeedExample[] = [];
  text.split('\n').forEach((line, i) => {
    if (line.trim() === '') return;
    let parsed;
    try {
      parsed = moderationExportLineSchema.parse(JSON.parse(line));
    } catch (err) {
      throw new UnrecoverableError(`${source}:${i + 1}: not a moderation export line: ${(err as Error).message.slice(0, 300)}`);
    }
    out.push({ id: `rv-${parsed.id}`, text: parsed.text, lang: 'und', labels: closeLabels(parsed.categories), hard: parsed.categories.length === 0 && parsed.overturned });
  });
  return out;
}

@Injectable()
export class ModerationTrainProcessor extends TrainingJobProcessor<ModerationTrainJobData, Trained, ModerationTrainJobResult> {
  constructor(@Inject(TRAINER_CONFIG) config: TrainerConfig, store: TrainerStore, mesh: MeshConnection) {
    super(config, store, mesh, { queue: QUEUES.moderationTrain, schema: moderationTrainJobDataSchema, kind: 'moderation-train', versionPrefix: 'mod' });
  }

  /** The configured lexicon and policy: candidates are judged as they would be served. */
  private get files() {
    return { lexiconPath: this.config.moderation.lexiconPath, policyPath: this.config.moderation.policyPath };
  }

  protected async prepare(job: QueueJob, data: ModerationTrainJobData, { jobId, id, outDir }: TrainingTarget): Promise<PreparedTraining<Trained, ModerationTrainJobResult>> {
    const source = data.data ? (data.data.kind === 'export' ? `export ${data.data.exportId}` : path.resolve(data.data.path)) : 'the seed set alone';
    const reviewed = data.data ? reviewedExamples(await this.store.trainingText(data.data, 'moderation'), source) : [];
    const seedSet = loadSeedSet(path.join(moderationDataDir(), 'seed'));
    const seedSplit = splitSeedSet(seedSet, data.seed, data.heldout);
    const reviewedSplit = splitSeedSet(reviewed, data.seed, data.heldout);
    const train = [...seedSplit.train, ...reviewedSplit.train.flatMap((e) => Array.from({ length: data.reviewedWeight }, (_, k) => ({ ...e, id: `${e.id}#${k}` })))];
    const heldout = [...seedSplit.test, ...reviewedSplit.test];
    const epochs = data.epochs ?? DEFAULT_TRAIN_OPTIONS.epochs;
    this.logger.log(`job ${jobId}: moderation classifier on ${seedSplit.train.length} seed + ${reviewedSplit.train.length} reviewed examples (×${data.reviewedWeight}) from ${source} → ${outDir}`);
    const exportIds = data.data?.kind === 'export' ? [data.data.exportId] : [];

    return {
      run: { exportId: exportIds[0] ?? null, parentRunId: data.parentRunId },
      train: async (recorder) => {
        const report = this.progressReporter<ModerationTrainProgress>(job, recorder, (p) => `loss ${p.loss.toFixed(4)}`);
        const pending: Array<Promise<void>> = [];
        // Seconds of CPU (17 s for the seed set here): the trainer's control API and its jobs' locks answer
        // between epochs.
        const trained = await trainClassifierYielding(
          train,
          {
            ...DEFAULT_TRAIN_OPTIONS,
            seed: data.seed,
            epochs,
            onEpoch: (p) => void pending.push(report({ step: p.step, steps: p.steps, loss: p.loss })),
          },
          { version: id, reviewed: reviewed.length, reviewedWeight: data.reviewedWeight, split: { train: train.length, test: heldout.length } },
        );
        await Promise.all(pending);
        mkdirSync(outDir, { recursive: true });
        writeFileSync(path.join(outDir, 'weights.bin'), Buffer.from(trained.weights.buffer, trained.weights.byteOffset, trained.weights.byteLength));
        writeFileSync(path.join(outDir, 'model.json'), `${JSON.stringify(trained.meta, null, 1)}\n`);
        return { examples: train.length, reviewed: reviewed.length, heldout };
      },
      finish: async (t) => {
        const nc = await this.mesh.connected;
        const activeEntry = await readActive(nc, 'moderation');
        const activeDir = activeEntry ? await fetchCheckpoint(nc, activeEntry.checkpoint, path.resolve(this.config.stateDir, 'checkpoints')) : this.config.moderation.modelDir;
        const active = loadModerator({ ...this.files, modelDir: activeDir });
        const candidate = loadModerator({ ...this.files, modelDir: outDir });
        const verdict = judgeModerationCandidate(candidate, active, t.heldout, { candidate: id, active: activeEntry?.version ?? active.modelId });
        const promote = verdict.pass && data.promote === 'if-better';
        const metrics = { heldout: t.heldout.length, examples: t.examples, reviewed: t.reviewed, candidate: verdict.candidate, active: verdict.active, pass: verdict.pass, reasons: verdict.reasons };
        const result: ModerationTrainJobResult = {
          versionId: id,
          checkpointDir: outDir,
          examples: t.examples,
          reviewed: t.reviewed,
          candidate: verdict.candidate,
          active: verdict.active,
          promoted: promote,
          reasons: verdict.reasons,
        };
        return {
          role: 'moderation',
          source: data.data ?? { kind: 'jsonl', path: path.join(moderationDataDir(), 'seed') },
          metrics,
          baseVersion: activeEntry?.version ?? null,
          lineage: { parent: activeEntry?.version ?? null, exports: exportIds },
          summary: `held-out macro F1 ${verdict.active.macro_f1.toFixed(3)} (${verdict.active.version}) → ${verdict.candidate.macro_f1.toFixed(3)}; ${promote ? 'promoted' : verdict.pass ? 'not promoted (promote: never)' : `not promoted: ${verdict.reasons.join('; ')}`}; published moderation version ${id}`,
          result,
          afterPublish: async () => {
            await this.store.use((db) => recordVersionEval(db, id, { ...verdict, promoted: promote }));
            if (promote) {
              await promoteVersion(nc, 'moderation', id, 'trainer-moderation', `held-out macro F1 ${verdict.active.macro_f1.toFixed(3)} → ${verdict.candidate.macro_f1.toFixed(3)}`);
            } else if (!verdict.pass) {
              await this.store.use((db) => markVersionRejected(db, id, verdict.reasons));
            }
          },
        };
      },
    };
  }
}
