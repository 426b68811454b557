/**
 * The policy replica's engine: loads the configured checkpoint at boot (readiness waits for it), runs
 * the native continuous-batching engine, and turns a policy.generate request into the frame stream of
 * the contract (start, token…, finish per choice, end). Not the NATS handler (policy.controller.ts).
 */
import path from 'node:path';
import { Inject, Injectable, Logger, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import type { GenerateFrame, GenerateRequest, PolicyInfo } from '@flywheel/contracts';
import type { PolicyConfig } from '@flywheel/config';
import { MeshError, Readiness, SERVICE_CONFIG, SERVICE_METRICS, type ServiceMetrics } from '@flywheel/mesh';
import { createNativeEngine, EngineError, loadCheckpoint, type Checkpoint, type EngineStats, type NativeEngine } from '@flywheel/model';
import { createEngineMetrics } from './engine.metrics';
import { promptTokenIds, toEngineRequest } from './generate-request.mapper';

const KV_BLOCK_TOKENS = 16;
const KV_AUTO_CAP_BYTES = 1 << 30;

interface Loaded {
  checkpoint: Checkpoint;
  native: NativeEngine;
  maxModelLen: number;
  loadedAt: number;
}

@Injectable()
export class PolicyEngineService implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger('policy-engine');
  private loaded: Loaded | null = null;

  constructor(
    @Inject(SERVICE_CONFIG) private readonly config: PolicyConfig,
    @Inject(SERVICE_METRICS) private readonly metrics: ServiceMetrics,
    private readonly readiness: Readiness,
  ) {
    readiness.require('model');
  }

  onModuleInit(): void {
    // Not awaited: the health port must answer while a large model loads; readiness says when it is done.
    void this.load().catch((err: unknown) => {
      process.stderr.write(`policy: cannot serve model ${this.config.policy.model}: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(1);
    });
  }

  async onApplicationShutdown(): Promise<void> {
    await this.loaded?.native.close();
    this.loaded = null;
  }

  private async load(): Promise<void> {
    const p = this.config.policy;
    const started = Date.now();
    const checkpoint = await loadCheckpoint(path.resolve(p.model));
    const maxModelLen = p.maxModelLen > 0 ? Math.min(p.maxModelLen, checkpoint.spec.maxPositionEmbeddings) : checkpoint.spec.maxPositionEmbeddings;
    const observer = createEngineMetrics(this.metrics.registry, () => this.stats());
    const native = createNativeEngine(checkpoint, {
      numBlocks: this.kvBlocks(checkpoint, maxModelLen),
      blockSize: KV_BLOCK_TOKENS,
      dtype: p.dtype,
      threads: p.threads > 0 ? p.threads : undefined,
      maxModelLen,
      observer,
      engine: { maxBatchTokens: Math.max(p.maxBatchTokens, p.maxSeqs), maxSeqs: p.maxSeqs, maxWaiting: p.maxWaiting },
    });
    this.loaded = { checkpoint, native, maxModelLen, loadedAt: Math.floor(Date.now() / 1000) };
    this.readiness.set('model', true);
    this.logger.log(`serving ${checkpoint.id} (${p.dtype}, context ${maxModelLen}) as version ${p.version}, loaded in ${Date.now() - started} ms`);
  }

  /** Auto: room for maxSeqs full contexts, capped so the KV cache stays under 1 GiB. */
  private kvBlocks(checkpoint: Checkpoint, maxModelLen: number): number {
    if (this.config.policy.kvBlocks > 0) return this.config.policy.kvBlocks;
    const s = checkpoint.spec;
    const bytesPerBlock = 2 * s.numLayers * KV_BLOCK_TOKENS * s.numKvHeads * s.headDim * 4;
    const wanted = this.config.policy.maxSeqs * Math.ceil(maxModelLen / KV_BLOCK_TOKENS);
    return Math.max(Math.ceil(maxModelLen / KV_BLOCK_TOKENS) + 1, Math.min(wanted, Math.floor(KV_AUTO_CAP_BYTES / bytesPerBlock)));
  }

  private get ready(): Loaded {
    if (!this.loaded) throw new MeshError('unavailable', 'the policy model is still loading');
    return this.loaded;
  }

  stats(): EngineStats | null {
    return this.loaded?.native.engine.stats() ?? null;
  }

  info(): PolicyInfo {
    const { checkpoint, maxModelLen, loadedAt } = this.ready;
    return {
      model: checkpoint.id,
      policyVersion: this.config.policy.version,
      loadedAt,
      contextLength: maxModelLen,
      vocabSize: checkpoint.spec.vocabSize,
      dtype: this.config.policy.dtype,
      instanceId: this.config.instanceId,
      hasChatTemplate: checkpoint.chatTemplate !== null,
    };
  }

  cancel(requestId: string): boolean {
    return this.loaded?.native.engine.cancel(requestId) ?? false;
  }

  async *generate(req: GenerateRequest): AsyncGenerator<GenerateFrame> {
    const { checkpoint, native } = this.ready;
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
      policyVersion: this.config.policy.version,
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

function asMeshError(err: unknown): unknown {
  return err instanceof EngineError ? new MeshError(err.code, err.message) : err;
}
