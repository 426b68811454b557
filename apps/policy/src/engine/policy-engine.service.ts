/**
 * The policy replica's engine: serves the `policy` entry of the `models` KV (else FLYWHEEL_MODEL as the
 * configured version), runs the native continuous-batching engine, and turns a policy.generate request into
 * the frame stream of the contract (start, token…, finish per choice, end). A new KV entry is hot-swapped:
 * the new engine takes new requests at once, requests in flight finish on the engine (and version) they
 * started with, and the old engine is closed when its last one ends. Not the NATS handler (policy.controller.ts).
 */
import path from 'node:path';
import { Inject, Injectable, Logger, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import type {
  ActiveModelEntry,
  DetokenizeRequestPayload,
  DetokenizeResult,
  GenerateFrame,
  GenerateRequest,
  OutputConstraint,
  PolicyInfo,
  TokenDelta,
  TokenizeRequestPayload,
  TokenizeResult,
} from '@flywheel/contracts';
import type { PolicyConfig } from '@flywheel/config';
import {
  ActiveModelSource,
  MeshError,
  Readiness,
  SERVICE_CONFIG,
  SERVICE_METRICS,
  ServedVersions,
  type ActiveModelSourceLike,
  type ServiceMetrics,
} from '@flywheel/mesh';
import { JsonSchemaSupportError } from '@flywheel/contracts';
import {
  createNativeEngineAsync,
  detectReasoning,
  detectToolCallFormat,
  EngineError,
  FramePacer,
  loadCheckpoint,
  StructuredOutputCompiler,
  templateHandlesTools,
  type Checkpoint,
  type EngineObserver,
  type EngineStats,
  type NativeEngine,
  type SequenceConstraint,
  type TokenEventStream,
} from '@flywheel/model';
import { createEngineMetrics } from './engine.metrics';
import { detokenizePayload, promptTokenIds, tokenizePayload, toEngineRequest, type ChatRendering } from './generate-request.mapper';

const KV_BLOCK_TOKENS = 16;
const KV_AUTO_CAP_BYTES = 1 << 30;

/** One loaded version; a generate stream pins it (ServedVersions) and it is closed after its last one. */
interface Slot {
  version: string;
  checkpoint: Checkpoint;
  native: NativeEngine;
  maxModelLen: number;
  loadedAt: number;
  rendering: ChatRendering;
  /** Structured outputs' compiler for this vocabulary: started when the version loads (grammarOf), then shared. */
  grammar: Promise<StructuredOutputCompiler> | null;
}

const CUMULATIVE = ['preemptions', 'prefixCacheHitBlocks', 'prefixCacheQueriedBlocks', 'promptTokens', 'generationTokens', 'steps'] as const;

@Injectable()
export class PolicyEngineService implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger('policy-engine');
  private readonly versions: ServedVersions<Slot>;
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
  /** Served model name: stays that of FLYWHEEL_MODEL across swaps, so clients' `model` keeps matching. */
  private readonly modelId: string;
  /** One clock for every request's frames: at most one per FLYWHEEL_STREAM_INTERVAL_MS each (0 = a frame per step). */
  private readonly pacer: FramePacer;

  constructor(
    @Inject(SERVICE_CONFIG) private readonly config: PolicyConfig,
    @Inject(SERVICE_METRICS) private readonly metrics: ServiceMetrics,
    private readonly readiness: Readiness,
    @Inject(ActiveModelSource) source: ActiveModelSourceLike,
  ) {
    readiness.require('model');
    this.observer = createEngineMetrics(
      this.metrics.registry,
      () => this.stats(),
      () => this.versions.active?.native ?? null,
    );
    this.modelId = path.basename(config.policy.model).replace(/\.gguf$/i, '');
    this.pacer = new FramePacer(config.policy.streamIntervalMs);
    this.versions = new ServedVersions<Slot>({
      role: 'policy',
      source,
      registry: this.metrics.registry,
      logger: this.logger,
      load: async (entry) => this.load(await source.fetch(entry), entry.version),
      release: (slot) => this.close(slot),
    });
  }

  onModuleInit(): void {
    // Not awaited: the health port must answer while a large model loads; readiness says when it is done.
    void this.boot().catch((err: unknown) => {
      process.stderr.write(`policy: cannot serve model ${this.config.policy.model}: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(1);
    });
  }

  async onApplicationShutdown(): Promise<void> {
    await this.versions.close();
  }

  private async boot(): Promise<void> {
    await this.versions.start(() => this.load(path.resolve(this.config.policy.model), this.config.policy.version), this.config.policy.model);
    this.readiness.set('model', true);
  }

  /** Loads the entry's weights beside the serving engine, then switches; a failure keeps the old version. */
  swap(entry: ActiveModelEntry): Promise<boolean> {
    return this.versions.swap(entry);
  }

  /** Keeps the counters of a closed engine, so the mirrored counters never go backwards across a swap. */
  private async close(slot: Slot): Promise<void> {
    const stats = slot.native.engine.stats();
    for (const k of CUMULATIVE) this.closedTotals[k] += stats[k];
    await slot.native.close();
    if (slot.grammar) (await slot.grammar.catch(() => null))?.dispose();
  }

  private async load(dir: string, version: string): Promise<Slot> {
    const p = this.config.policy;
    const started = Date.now();
    const checkpoint = await loadCheckpoint(dir, { id: this.modelId });
    const maxModelLen = p.maxModelLen > 0 ? Math.min(p.maxModelLen, checkpoint.spec.maxPositionEmbeddings) : checkpoint.spec.maxPositionEmbeddings;
    const native = await createNativeEngineAsync(checkpoint, {
      numBlocks: this.kvBlocks(checkpoint, maxModelLen),
      blockSize: KV_BLOCK_TOKENS,
      dtype: p.dtype,
      kvDtype: p.kvDtype,
      threads: p.threads > 0 ? p.threads : undefined,
      maxModelLen,
      observer: this.observer,
      engine: { maxBatchTokens: Math.max(p.maxBatchTokens, p.maxSeqs), maxSeqs: p.maxSeqs, maxWaiting: p.maxWaiting },
    });
    this.logger.log(`loaded ${checkpoint.id} (${native.dtype}, context ${maxModelLen}) as version ${version} in ${Date.now() - started} ms`);
    const template = checkpoint.chatTemplate?.source ?? null;
    const rendering: ChatRendering = {
      hasChatTemplate: checkpoint.chatTemplate !== null,
      toolCallFormat: detectToolCallFormat(template, p.toolCallFormat),
      templateHandlesTools: templateHandlesTools(template),
      reasoning: detectReasoning(template, p.reasoningParser, () => checkpoint.tokenizer.renderChat([{ role: 'user', content: 'x' }], { addGenerationPrompt: true })),
    };
    const slot: Slot = { version, checkpoint, native, maxModelLen, loadedAt: Math.floor(Date.now() / 1000), rendering, grammar: null };
    // The grammar compiler's vocabulary pass (about 0.1 s for GPT-2's 50k vocabulary here) runs once here, not on the
    // first structured-output request; a failure only logs (that request then reports it). Of it only the tokenizer's
    // vocabulary read holds this thread (30–40 ms at 49k–128k ids), once per tokenizer build: a swap to a version of
    // the same base reuses both (loadTokenizer).
    setImmediate(() => void grammarOf(slot).catch((err: unknown) => this.logger.warn(`structured outputs unavailable: ${err instanceof Error ? err.message : String(err)}`)));
    return slot;
  }

  /** Auto: room for maxSeqs full contexts, capped so the KV cache stays under 1 GiB. */
  private kvBlocks(checkpoint: Checkpoint, maxModelLen: number): number {
    if (this.config.policy.kvBlocks > 0) return this.config.policy.kvBlocks;
    const s = checkpoint.spec;
    const bytesPerBlock = 2 * s.numLayers * KV_BLOCK_TOKENS * s.numKvHeads * s.headDim * (this.config.policy.kvDtype === 'f16' ? 2 : 4);
    const wanted = this.config.policy.maxSeqs * Math.ceil(maxModelLen / KV_BLOCK_TOKENS);
    return Math.max(Math.ceil(maxModelLen / KV_BLOCK_TOKENS) + 1, Math.min(wanted, Math.floor(KV_AUTO_CAP_BYTES / bytesPerBlock)));
  }

  private get ready(): Slot {
    const slot = this.versions.active;
    if (!slot) throw new MeshError('unavailable', 'the policy model is still loading');
    return slot;
  }

  /** Running/waiting/usage of every live engine; counters include engines already closed. */
  stats(): EngineStats | null {
    const slots = this.versions.live();
    if (slots.length === 0) return null;
    const all = slots.map((s) => s.native.engine.stats());
    const sum = (k: keyof EngineStats) => all.reduce((a, st) => a + st[k], 0);
    return {
      running: sum('running'),
      waiting: sum('waiting'),
      kvUsage: this.versions.active?.native.engine.stats().kvUsage ?? 0,
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
      dtype: this.ready.native.dtype,
      weightTypes: this.ready.native.weightTypes,
      instanceId: this.config.instanceId,
      hasChatTemplate: checkpoint.chatTemplate !== null,
      toolCallFormat: this.ready.rendering.toolCallFormat,
      reasoning: this.ready.rendering.reasoning,
    };
  }

  /** policy.tokenize with the serving version's tokenizer and chat template. */
  tokenize(req: TokenizeRequestPayload): TokenizeResult {
    const { checkpoint, maxModelLen, rendering } = this.ready;
    return { tokenIds: tokenizePayload(req, checkpoint.tokenizer, rendering), maxModelLen };
  }

  detokenize(req: DetokenizeRequestPayload): DetokenizeResult {
    return { text: detokenizePayload(req, this.ready.checkpoint.tokenizer) };
  }

  /** One grammar matcher per choice; a schema the grammar cannot enforce is the caller's error (400). */
  private async constraints(slot: Slot, constraint: OutputConstraint, n: number): Promise<SequenceConstraint[]> {
    try {
      return await (await grammarOf(slot)).constraints(constraint, n);
    } catch (err) {
      if (err instanceof JsonSchemaSupportError) throw new MeshError('invalid_payload', err.message, err.param);
      throw new MeshError('invalid_payload', `the output constraint does not compile: ${err instanceof Error ? err.message : String(err)}`, 'constraint');
    }
  }

  cancel(requestId: string): boolean {
    let found = false;
    for (const slot of this.versions.live()) found = slot.native.engine.cancel(requestId) || found;
    return found;
  }

  async *generate(req: GenerateRequest): AsyncGenerator<GenerateFrame> {
    // The slot is pinned for the whole stream: a swap meanwhile does not touch this request.
    const slot = this.versions.pin();
    if (!slot) throw new MeshError('unavailable', 'the policy model is still loading');
    try {
      yield* this.generateOn(slot, req);
    } finally {
      this.versions.unpin(slot);
    }
  }

  private async *generateOn(slot: Slot, req: GenerateRequest): AsyncGenerator<GenerateFrame> {
    const { checkpoint, native } = slot;
    const arrived = performance.now();
    const since = () => Math.round((performance.now() - arrived) * 1000) / 1000;
    const promptIds = promptTokenIds(req.input, checkpoint.tokenizer, slot.rendering);
    const engineReq = toEngineRequest(req, promptIds, checkpoint.spec.vocabSize);
    if (req.constraint) engineReq.constraints = await this.constraints(slot, req.constraint, req.sampling.n);
    let events: TokenEventStream;
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
      // One frame per batch of events: a step's token of every choice, or more when sending fell behind or the pacer held it.
      for await (const batch of events.batches(this.pacer)) {
        const tokens: TokenDelta[] = [];
        for (const ev of batch) {
          completion[ev.choiceIndex] = ev.usage.completionTokens;
          if (ev.tokenIds.length === 0 && ev.textDelta.length === 0 && !ev.finishReason) continue;
          if (ev.tokenIds.length > 0 || ev.textDelta.length > 0) ttftMs ??= since();
          tokens.push({
            choice: ev.choiceIndex,
            text: ev.textDelta,
            tokenIds: ev.tokenIds,
            ...(ev.logprobs ? { logprobs: ev.logprobs } : {}),
            ...(ev.finishReason ? { finishReason: ev.finishReason } : {}),
          });
        }
        if (tokens.length > 0) yield { type: 'tokens', tokens };
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

function grammarOf(slot: Pick<Slot, 'checkpoint' | 'rendering' | 'grammar'>): Promise<StructuredOutputCompiler> {
  slot.grammar ??= StructuredOutputCompiler.create(slot.checkpoint.tokenizer.grammarVocab(), {
    vocabSize: slot.checkpoint.spec.vocabSize,
    stopTokenIds: slot.checkpoint.generation.eosTokenIds,
    toolCallFormat: slot.rendering.toolCallFormat,
  });
  return slot.grammar;
}

function asMeshError(err: unknown): unknown {
  return err instanceof EngineError ? new MeshError(err.code, err.message) : err;
}
