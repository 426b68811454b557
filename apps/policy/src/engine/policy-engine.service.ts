/**
 * The policy replica's engine: serves the `policy` entry of the `models` KV (else FLYWHEEL_MODEL as the
 * configured version), runs the native continuous-batching engine, and turns a policy.generate request into
 * the frame stream of the contract (start, token…, finish per choice, end). A new KV entry is hot-swapped:
 * the new engine takes new requests at once, requests in flight finish on the engine (and version) they
 * started with, and the old engine is closed when its last one ends. Not the NATS handler (policy.controller.ts).
 */
import path from 'node:path';
import { Inject, Injectable, Logger, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import type { ActiveModelEntry, GenerateFrame, GenerateRequest, PolicyInfo } from '@flywheel/contracts';
import type { PolicyConfig } from '@flywheel/config';
import { MeshError, Readiness, SERVICE_CONFIG, SERVICE_METRICS, type ServiceMetrics } from '@flywheel/mesh';
import {
  createNativeEngine,
  EngineError,
  loadCheckpoint,
  type Checkpoint,
  type EngineObserver,
  type EngineStats,
  type NativeEngine,
} from '@flywheel/model';
import { ActiveModelSource, type ActiveModelSourceLike } from './active-model.source';
import { createEngineMetrics, createSwapMetrics, type SwapMetrics } from './engine.metrics';
import { promptTokenIds, toEngineRequest } from './generate-request.mapper';

const KV_BLOCK_TOKENS = 16;
const KV_AUTO_CAP_BYTES = 1 << 30;
/** How long boot waits for NATS to read the KV entry before serving FLYWHEEL_MODEL (the watch swaps later). */
const BOOT_KV_WAIT_MS = 3_000;
const WATCH_RETRY_MS = 2_000;

/** One loaded version. `inflight` counts generate streams started on it; a retired slot closes at zero. */
interface Slot {
  version: string;
  checkpoint: Checkpoint;
  native: NativeEngine;
  maxModelLen: number;
  loadedAt: number;
  inflight: number;
  retired: boolean;
}

const CUMULATIVE = ['preemptions', 'prefixCacheHitBlocks', 'prefixCacheQueriedBlocks', 'promptTokens', 'generationTokens', 'steps'] as const;

@Injectable()
export class PolicyEngineService implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger('policy-engine');
  private active: Slot | null = null;
  /** Retired slots still finishing requests. */
  private readonly draining = new Set<Slot>();
  /** Cumulative stats of closed engines, so the mirrored counters never go backwards across a swap. */
  private readonly closedTotals: Record<(typeof CUMULATIVE)[number], number> = {
    preemptions: 0,
    prefixCacheHitBlocks: 0,
    prefixCacheQueriedBlocks: 0,
    promptTokens: 0,
    generationTokens: 0,
    steps: 0,
  };
  private readonly observer: EngineObserver;
  private readonly swapMetrics: SwapMetrics;
  private readonly stopWatch = new AbortController();
  /** Served model name: stays that of FLYWHEEL_MODEL across swaps, so clients' `model` keeps matching. */
  private readonly modelId: string;

  constructor(
    @Inject(SERVICE_CONFIG) private readonly config: PolicyConfig,
    @Inject(SERVICE_METRICS) private readonly metrics: ServiceMetrics,
    private readonly readiness: Readiness,
    @Inject(ActiveModelSource) private readonly source: ActiveModelSourceLike,
  ) {
    readiness.require('model');
    this.observer = createEngineMetrics(this.metrics.registry, () => this.stats());
    this.swapMetrics = createSwapMetrics(this.metrics.registry);
    this.modelId = path.basename(config.policy.model).replace(/\.gguf$/i, '');
  }

  onModuleInit(): void {
    // Not awaited: the health port must answer while a large model loads; readiness says when it is done.
    void this.boot().catch((err: unknown) => {
      process.stderr.write(`policy: cannot serve model ${this.config.policy.model}: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(1);
    });
  }

  async onApplicationShutdown(): Promise<void> {
    this.stopWatch.abort();
    const slots = [...this.draining, ...(this.active ? [this.active] : [])];
    this.active = null;
    this.draining.clear();
    await Promise.all(slots.map((s) => s.native.close()));
  }

  private async boot(): Promise<void> {
    const entry = await this.source.current(BOOT_KV_WAIT_MS).catch((err: unknown) => {
      this.logger.warn(`cannot read the active policy version: ${message(err)}; serving ${this.config.policy.model}`);
      return null;
    });
    let slot: Slot | null = null;
    if (entry) {
      slot = await this.loadEntry(entry).catch((err: unknown) => {
        this.logger.error(`cannot load active version ${entry.version}: ${message(err)}; serving ${this.config.policy.model}`);
        return null;
      });
    }
    slot ??= await this.load(path.resolve(this.config.policy.model), this.config.policy.version);
    this.switchTo(slot);
    this.readiness.set('model', true);
    void this.follow();
  }

  /** Follows the KV key for the life of the replica; a broken watch (NATS down, no JetStream) is retried. */
  private async follow(): Promise<void> {
    let lastError = '';
    while (!this.stopWatch.signal.aborted) {
      try {
        for await (const entry of this.source.watch(this.stopWatch.signal)) {
          lastError = '';
          if (this.stopWatch.signal.aborted) return;
          if (entry.version === this.active?.version) continue;
          await this.swap(entry);
        }
      } catch (err) {
        const m = message(err);
        if (m !== lastError) this.logger.warn(`watching the active policy version failed: ${m}; retrying`);
        lastError = m;
      }
      await new Promise((r) => setTimeout(r, WATCH_RETRY_MS).unref());
    }
  }

  /** Loads the entry's weights beside the serving engine, then switches; a failure keeps the old version. */
  async swap(entry: ActiveModelEntry): Promise<boolean> {
    const started = Date.now();
    try {
      const slot = await this.loadEntry(entry);
      if (this.stopWatch.signal.aborted) {
        await slot.native.close();
        return false;
      }
      const from = this.active?.version ?? null;
      this.switchTo(slot);
      this.swapMetrics.swaps.inc({ outcome: 'ok' });
      this.logger.log(`swapped ${from} → ${entry.version} (${entry.reason}, by ${entry.promotedBy}) in ${Date.now() - started} ms`);
      return true;
    } catch (err) {
      this.swapMetrics.swaps.inc({ outcome: 'failed' });
      this.logger.error(`cannot swap to ${entry.version}: ${message(err)}; still serving ${this.active?.version ?? 'nothing'}`);
      return false;
    }
  }

  private switchTo(slot: Slot): void {
    const old = this.active;
    this.active = slot;
    this.swapMetrics.activeVersion.reset();
    this.swapMetrics.activeVersion.set({ version: slot.version }, 1);
    if (old) {
      old.retired = true;
      this.draining.add(old);
      this.closeIfIdle(old);
    }
  }

  private closeIfIdle(slot: Slot): void {
    if (!slot.retired || slot.inflight > 0 || !this.draining.has(slot)) return;
    this.draining.delete(slot);
    const stats = slot.native.engine.stats();
    for (const k of CUMULATIVE) this.closedTotals[k] += stats[k];
    void slot.native.close().catch((err: unknown) => this.logger.warn(`closing engine of ${slot.version}: ${message(err)}`));
  }

  private async loadEntry(entry: ActiveModelEntry): Promise<Slot> {
    return this.load(await this.source.fetch(entry), entry.version);
  }

  private async load(dir: string, version: string): Promise<Slot> {
    const p = this.config.policy;
    const started = Date.now();
    const checkpoint = await loadCheckpoint(dir, { id: this.modelId });
    const maxModelLen = p.maxModelLen > 0 ? Math.min(p.maxModelLen, checkpoint.spec.maxPositionEmbeddings) : checkpoint.spec.maxPositionEmbeddings;
    const native = createNativeEngine(checkpoint, {
      numBlocks: this.kvBlocks(checkpoint, maxModelLen),
      blockSize: KV_BLOCK_TOKENS,
      dtype: p.dtype,
      threads: p.threads > 0 ? p.threads : undefined,
      maxModelLen,
      observer: this.observer,
      engine: { maxBatchTokens: Math.max(p.maxBatchTokens, p.maxSeqs), maxSeqs: p.maxSeqs, maxWaiting: p.maxWaiting },
    });
    this.logger.log(`loaded ${checkpoint.id} (${p.dtype}, context ${maxModelLen}) as version ${version} in ${Date.now() - started} ms`);
    return { version, checkpoint, native, maxModelLen, loadedAt: Math.floor(Date.now() / 1000), inflight: 0, retired: false };
  }

  /** Auto: room for maxSeqs full contexts, capped so the KV cache stays under 1 GiB. */
  private kvBlocks(checkpoint: Checkpoint, maxModelLen: number): number {
    if (this.config.policy.kvBlocks > 0) return this.config.policy.kvBlocks;
    const s = checkpoint.spec;
    const bytesPerBlock = 2 * s.numLayers * KV_BLOCK_TOKENS * s.numKvHeads * s.headDim * 4;
    const wanted = this.config.policy.maxSeqs * Math.ceil(maxModelLen / KV_BLOCK_TOKENS);
    return Math.max(Math.ceil(maxModelLen / KV_BLOCK_TOKENS) + 1, Math.min(wanted, Math.floor(KV_AUTO_CAP_BYTES / bytesPerBlock)));
  }

  private get ready(): Slot {
    if (!this.active) throw new MeshError('unavailable', 'the policy model is still loading');
    return this.active;
  }

  /** Running/waiting/usage of every live engine; counters include engines already closed. */
  stats(): EngineStats | null {
    const slots = [...this.draining, ...(this.active ? [this.active] : [])];
    if (slots.length === 0) return null;
    const all = slots.map((s) => s.native.engine.stats());
    const sum = (k: keyof EngineStats) => all.reduce((a, st) => a + st[k], 0);
    return {
      running: sum('running'),
      waiting: sum('waiting'),
      kvUsage: this.active ? this.active.native.engine.stats().kvUsage : 0,
      preemptions: sum('preemptions') + this.closedTotals.preemptions,
      prefixCacheHitBlocks: sum('prefixCacheHitBlocks') + this.closedTotals.prefixCacheHitBlocks,
      prefixCacheQueriedBlocks: sum('prefixCacheQueriedBlocks') + this.closedTotals.prefixCacheQueriedBlocks,
      promptTokens: sum('promptTokens') + this.closedTotals.promptTokens,
      generationTokens: sum('generationTokens') + this.closedTotals.generationTokens,
      steps: sum('steps') + this.closedTotals.steps,
    };
  }

  info(): PolicyInfo {
    const { checkpoint, maxModelLen, loadedAt, version } = this.ready;
    return {
      model: checkpoint.id,
      policyVersion: version,
      loadedAt,
      contextLength: maxModelLen,
      vocabSize: checkpoint.spec.vocabSize,
      dtype: this.config.policy.dtype,
      instanceId: this.config.instanceId,
      hasChatTemplate: checkpoint.chatTemplate !== null,
    };
  }

  cancel(requestId: string): boolean {
    let found = this.active?.native.engine.cancel(requestId) ?? false;
    for (const slot of this.draining) found = slot.native.engine.cancel(requestId) || found;
    return found;
  }

  async *generate(req: GenerateRequest): AsyncGenerator<GenerateFrame> {
    // The slot is pinned for the whole stream: a swap meanwhile does not touch this request.
    const slot = this.ready;
    slot.inflight += 1;
    try {
      yield* this.generateOn(slot, req);
    } finally {
      slot.inflight -= 1;
      this.closeIfIdle(slot);
    }
  }

  private async *generateOn(slot: Slot, req: GenerateRequest): AsyncGenerator<GenerateFrame> {
    const { checkpoint, native } = slot;
    const arrived = performance.now();
    const since = () => Math.round((performance.now() - arrived) * 1000) / 1000;
    const promptIds = promptTokenIds(req.input, checkpoint.tokenizer, checkpoint.chatTemplate !== null);
    const engineReq = toEngineRequest(req, promptIds, checkpoint.spec.vocabSize);
    let events: AsyncIterable<import('@flywheel/model').TokenEvent>;
    try {
      events = native.engine.generate(engineReq);
    } catch (err) {
      throw asMeshError(err);
    }
    yield {
      type: 'start',
      requestId: req.requestId,
      model: checkpoint.id,
      policyVersion: slot.version,
      promptTokens: promptIds.length,
      ...(req.echo ? { promptText: checkpoint.tokenizer.decode(promptIds, { skipSpecialTokens: true }) } : {}),
    };
    const completion = new Array<number>(req.sampling.n).fill(0);
    let ttftMs: number | null = null;
    try {
      for await (const ev of events) {
        if (ev.tokenIds.length > 0 || ev.textDelta.length > 0) {
          ttftMs ??= since();
          yield {
            type: 'token',
            choice: ev.choiceIndex,
            text: ev.textDelta,
            tokenIds: ev.tokenIds,
            ...(ev.logprobs ? { logprobs: ev.logprobs } : {}),
          };
        }
        completion[ev.choiceIndex] = ev.usage.completionTokens;
        if (ev.finishReason) yield { type: 'finish', choice: ev.choiceIndex, finishReason: ev.finishReason };
      }
    } catch (err) {
      throw asMeshError(err);
    }
    yield {
      type: 'end',
      usage: { promptTokens: promptIds.length, completionTokens: completion.reduce((a, b) => a + b, 0) },
      timings: { ttftMs, e2eMs: since() },
    };
  }
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function asMeshError(err: unknown): unknown {
  return err instanceof EngineError ? new MeshError(err.code, err.message) : err;
}
