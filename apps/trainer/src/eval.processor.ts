/**
 * The BullMQ worker of the `eval` queue: fetches the candidate and the active policy from the checkpoint object
 * store, compares them on held-out prompts (runPolicyEval in libs/rl: reward-service scores, KL to the active
 * policy and to the original base, output moderation flag rate, and with independentRewardVersion the scores of a
 * reward model the candidate was not trained against, run here in-process), applies the gate and, when the job asks and the candidate passes, promotes
 * it with one write to the `models` KV (policy replicas then hot-swap). The verdict and its reasons are stored
 * with the run; a refused candidate's version row becomes `rejected`. A passing candidate's outputs go beside the
 * active version's into the blind A/B queue (abSamples); with abWait its promotion waits for the reviewers there
 * (POST /admin/api/ab/candidates/:version/decide). Not the comparison itself.
 */
import path from 'node:path';
import { Inject, Injectable } from '@nestjs/common';
import { UnrecoverableError } from 'bullmq';
import { AB_MIN_VERDICTS, evalJobDataSchema, MODERATION_MAX_BATCH, moderationResponseSchema, QUEUES, SUBJECTS, type EvalJobData, type EvalJobResult } from '@flywheel/contracts';
import type { TrainerConfig } from '@flywheel/config';
import { fetchCheckpoint, findPublished, MeshConnection, promoteVersion, readActive } from '@flywheel/mesh';
import { createRewardScorer, loadCheckpoint, type RewardScorer } from '@flywheel/model';
import { gateVerdict, runPolicyEval } from '@flywheel/rl';
import { markVersionRejected, queueAbPairs, recordVersionEval, type AbPairsToQueue } from '@flywheel/store';
import { RewardClient } from './reward.client';
import { RunRecorder } from './run.recorder';
import { TrainerMetrics } from './trainer.metrics';
import { QueueProcessor, type QueueJob } from './queue.processor';
import { TRAINER_CONFIG } from './trainer.queues';
import { TrainerStore } from './trainer.store';

@Injectable()
export class EvalProcessor extends QueueProcessor<EvalJobData, EvalJobResult> {
  constructor(
    @Inject(TRAINER_CONFIG) config: TrainerConfig,
    private readonly store: TrainerStore,
    private readonly mesh: MeshConnection,
    private readonly metrics: TrainerMetrics,
  ) {
    super(config, QUEUES.eval, evalJobDataSchema);
  }

  private async versionDir(version: string, role: 'policy' | 'reward' = 'policy'): Promise<string> {
    const nc = await this.mesh.connected;
    const published = await findPublished(nc, version);
    if (!published) throw new UnrecoverableError(`${role} version ${version} is not published in the checkpoint store`);
    if (published.role !== role) throw new UnrecoverableError(`version ${version} is a ${published.role} model, not a ${role === 'policy' ? 'policy' : 'reward model'}`);
    return fetchCheckpoint(nc, published.checkpoint, path.resolve(this.config.stateDir, 'checkpoints', 'cache'));
  }

  /**
   * The independent reward model, scored here on the native forward (the reward service serves the training RM, and
   * one reward model at a time); the caller frees it.
   */
  private async independentScorer(version: string): Promise<RewardScorer> {
    const ck = await loadCheckpoint(await this.versionDir(version, 'reward'));
    return createRewardScorer(ck, { threads: this.config.trainer.threads || undefined });
  }

  private async moderate(texts: string[]): Promise<boolean[]> {
    const out: boolean[] = [];
    for (let i = 0; i < texts.length; i += MODERATION_MAX_BATCH) {
      const r = await this.mesh.client.request(SUBJECTS.moderation.check, { input: texts.slice(i, i + MODERATION_MAX_BATCH), direction: 'output' }, moderationResponseSchema, { timeoutMs: 30_000, retryUndeliveredMs: 10_000 });
      out.push(...r.flywheel_results.map((f) => f.action !== 'allow'));
    }
    return out;
  }

  protected async handle(job: QueueJob, data: EvalJobData): Promise<EvalJobResult> {
    const jobId = job.id ?? 'unknown';
    const id = `eval-${jobId}`;
    const nc = await this.mesh.connected;
    const activeVersion = data.activeVersion ?? (await readActive(nc, 'policy'))?.version ?? null;
    if (activeVersion === null) throw new UnrecoverableError('no active policy version to compare with (promote one first, or name activeVersion)');
    if (activeVersion === data.candidateVersion) throw new UnrecoverableError(`the candidate ${data.candidateVersion} is already the active policy`);
    const recorder = new RunRecorder(this.store, id);
    await recorder.start('eval', { parentRunId: data.parentRunId, baseVersion: activeVersion, config: { ...data, jobId } });
    try {
      const [candidateDir, activeDir] = [await this.versionDir(data.candidateVersion), await this.versionDir(activeVersion)];
      // The drift bound's reference: the original base, whatever chain of promotions led to the active version.
      const baseVersion = data.baseVersion ?? this.config.loop.baseVersion;
      const baseDir = baseVersion === activeVersion ? activeDir : await this.versionDir(baseVersion).catch((err: unknown) => {
        this.logger.warn(`job ${jobId}: base version ${baseVersion} not available (${err instanceof Error ? err.message : String(err)}); KL to the base is not measured`);
        return null;
      });
      const reward = new RewardClient(this.mesh, data.rewardVersion);
      const rewardVersion = await reward.ready(120_000);
      if (data.independentRewardVersion !== null && data.independentRewardVersion === rewardVersion) {
        throw new UnrecoverableError(`the independent reward model ${rewardVersion} is the one the reward service serves: it is not independent`);
      }
      const independent = data.independentRewardVersion === null ? null : await this.independentScorer(data.independentRewardVersion);
      await job.updateProgress({ stage: 'sampling' });
      this.logger.log(
        `job ${jobId}: ${data.candidateVersion} vs ${activeVersion} on ${data.prompts.length} prompts × ${data.samples}, reward ${rewardVersion}` +
          (independent ? `, independent reward ${data.independentRewardVersion}` : ''),
      );
      const report = await runPolicyEval({
        candidateDir,
        activeDir,
        baseDir,
        prompts: data.prompts,
        samples: data.samples,
        maxNewTokens: data.maxNewTokens,
        stop: data.stop,
        seed: data.seed,
        score: (pairs) => reward.score(pairs),
        independentScore: independent ? (pairs) => independent.score(pairs) : null,
        // No moderation answer fails the eval (and so the promotion): the flag-rate bound is part of the gate.
        moderate: (texts) => this.moderate(texts),
        threads: this.config.trainer.threads || undefined,
      }).finally(() => independent?.free());
      const verdict = gateVerdict(report, data.gate);
      // A passing candidate meets reviewers blind; a refused one needs no second opinion.
      const pairs = verdict.promote ? abPairsOf(data.prompts, report.examples, data.abSamples) : [];
      const minVerdicts = data.abWait?.minVerdicts ?? AB_MIN_VERDICTS;
      if (pairs.length > 0) {
        await this.store.use((db) => queueAbPairs(db, { evalRunId: id, candidateVersion: data.candidateVersion, activeVersion, minVerdicts, pairs }));
      }
      const awaitingAb = verdict.promote && data.promote && data.abWait !== null && pairs.length > 0;
      // Both KLs go into the candidate's lineage, whatever the verdict.
      await this.store.use((db) =>
        recordVersionEval(db, data.candidateVersion, {
          run: id,
          active: activeVersion,
          base: baseVersion,
          kl: report.kl,
          kl_base: report.kl_base,
          reward_gain_std: report.reward_gain_std,
          reward_gain_std_length_controlled: report.reward_gain_std_length_controlled,
          best_of_n: report.best_of_n,
          independent:
            report.independent && data.independentRewardVersion !== null
              ? { version: data.independentRewardVersion, gain_std: report.independent.gain_std, gain_std_length_controlled: report.independent.gain_std_length_controlled }
              : null,
          pass: verdict.promote,
          reasons: verdict.reasons,
          ab: { pairs: pairs.length, wait: awaitingAb, min_verdicts: minVerdicts },
        }),
      );
      let promoted = false;
      if (awaitingAb) {
        this.logger.log(`job ${jobId}: ${data.candidateVersion} passes; its promotion waits for ${minVerdicts} A/B verdicts on ${pairs.length} pairs`);
      } else if (verdict.promote && data.promote) {
        const baseKl = report.kl_base === null ? '' : `, KL to ${baseVersion} ${report.kl_base.toFixed(3)}`;
        await promoteVersion(nc, 'policy', data.candidateVersion, 'trainer-eval', `eval ${id}: reward ${report.reward_before.toFixed(3)} → ${report.reward_after.toFixed(3)}, KL ${report.kl.toFixed(3)}${baseKl}`);
        promoted = true;
      } else if (!verdict.promote) {
        await this.store.use((db) => markVersionRejected(db, data.candidateVersion, verdict.reasons));
      }
      this.metrics.evalVerdicts.inc({ verdict: verdict.promote ? 'pass' : 'fail' });
      const { examples, ...numbers } = report;
      await recorder.patch({ status: 'succeeded', metrics: { ...numbers, examples, pass: verdict.promote, reasons: verdict.reasons, promoted, ab_pairs: pairs.length, awaiting_ab: awaitingAb, candidate: data.candidateVersion, active: activeVersion, base: baseVersion, reward_version: rewardVersion, independent_reward_version: data.independentRewardVersion } });
      this.logger.log(
        `job ${jobId}: reward ${report.reward_before.toFixed(3)}±${report.reward_std_before.toFixed(3)} → ${report.reward_after.toFixed(3)} ` +
          `(${report.reward_gain_std.toFixed(2)} std${report.independent ? `; independent ${report.independent.gain_std.toFixed(2)} std` : ''}), KL ${report.kl.toFixed(3)} (to the base ${report.kl_base?.toFixed(3) ?? 'n/a'}): ${verdict.promote ? (promoted ? 'promoted' : 'passes') : `refused (${verdict.reasons.join('; ')})`}`,
      );
      return { trainingRunId: id, candidateVersion: data.candidateVersion, activeVersion, report, pass: verdict.promote, reasons: verdict.reasons, promoted, abPairs: pairs.length, awaitingAb };
    } catch (err) {
      await recorder.patch({ status: 'failed', error: err instanceof Error ? err.message : String(err) });
      throw err;
    }
  }
}

/**
 * The A/B queue's pairs of an eval: the candidate's and the active version's first sample of each prompt (`examples`
 * is in prompt order), up to `limit`. An empty output stays: it is an answer reviewers should judge.
 */
export function abPairsOf(prompts: EvalJobData['prompts'], examples: EvalJobResult['report']['examples'], limit: number): AbPairsToQueue['pairs'] {
  const pairs: AbPairsToQueue['pairs'][number][] = [];
  for (const [i, e] of examples.entries()) {
    const prompt = prompts[i];
    if (pairs.length >= limit || !prompt) break;
    pairs.push({ prompt, candidate: e.response, active: e.active_response });
  }
  return pairs;
}
