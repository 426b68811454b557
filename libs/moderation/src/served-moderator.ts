/**
 * The moderator a replica serves while it follows the `moderation` entry of the `models` KV: at boot the active
 * version's classifier if one is promoted, else the configured files; then every promotion or rollback swaps the
 * classifier in without a restart (ServedVersions: a version that cannot be fetched or loaded is refused and the
 * old one keeps serving). The lexicon and policy stay the configured ones: a moderation version is a trained
 * classifier (model.json + weights.bin). Used by the moderation service and by the gateway's in-process checks.
 * A Moderator is plain memory and every check is synchronous, so nothing is pinned or freed. servedModeratorProviders
 * registers it (and the source it follows) in a Nest module.
 */
import { Logger, type Provider } from '@nestjs/common';
import type { Registry } from 'prom-client';
import { ActiveModelSource, activeModelSourceProvider, SERVICE_METRICS, ServedVersions, type ActiveModelSourceLike, type ServedVersionsLogger, type ServiceMetrics } from '@flywheel/mesh';
import { loadModerator, type ModeratorFiles } from './moderation.loader';
import type { Moderator } from './moderator';

/** Where a check gets its moderator: the one to use now (a ServedModerator's swaps, or a fixed one in specs). */
export interface ModeratorSource {
  readonly current: Moderator;
}

interface Slot {
  version: string;
  moderator: Moderator;
}

export interface ServedModeratorOptions {
  /** What the configured files load: served until (and unless) a version is promoted. */
  configured: Moderator;
  /** The configured lexicon and policy (null: built-in) that every version's classifier is served with. */
  files: Pick<ModeratorFiles, 'lexiconPath' | 'policyPath'>;
  source: ActiveModelSourceLike;
  registry: Registry;
  logger: ServedVersionsLogger;
}

export class ServedModerator implements ModeratorSource {
  private readonly versions: ServedVersions<Slot>;

  constructor(private readonly o: ServedModeratorOptions) {
    this.versions = new ServedVersions<Slot>({
      role: 'moderation',
      source: o.source,
      registry: o.registry,
      logger: o.logger,
      load: async (entry) => ({ version: entry.version, moderator: loadModerator({ ...o.files, modelDir: await o.source.fetch(entry) }) }),
      release: () => undefined,
    });
  }

  /** The moderator new checks use. */
  get current(): Moderator {
    return this.versions.active?.moderator ?? this.o.configured;
  }

  /** Reads the KV (briefly) and starts following it; never throws (the configured moderator is the fallback). */
  async start(): Promise<void> {
    await this.versions.start(async () => ({ version: this.o.configured.modelId, moderator: this.o.configured }), 'the configured moderation model');
  }

  close(): Promise<void> {
    return this.versions.close();
  }

  /** Nest lifecycle (the class is provided by a factory): follow from boot, stop at shutdown. */
  onModuleInit(): Promise<void> {
    return this.start();
  }

  onApplicationShutdown(): Promise<void> {
    return this.close();
  }
}

/**
 * The Nest providers of a service's ServedModerator (token: the class) and the `moderation` ActiveModelSource it
 * follows: what the moderation service and the gateway both register.
 */
export function servedModeratorProviders(configured: Moderator, files: ServedModeratorOptions['files']): Provider[] {
  return [
    activeModelSourceProvider('moderation'),
    {
      provide: ServedModerator,
      useFactory: (source: ActiveModelSourceLike, m: ServiceMetrics) =>
        new ServedModerator({ configured, files, source, registry: m.registry, logger: new Logger('moderation-versions') }),
      inject: [ActiveModelSource, SERVICE_METRICS],
    },
  ];
}
