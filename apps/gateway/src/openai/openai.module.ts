/**
 * The OpenAI-compatible API: keys and rate limits, the policy client, completion records on JetStream,
 * moderation (the service client, and the in-process moderator main.ts loaded at boot), metrics and
 * the access-log hooks, the /v1 controllers and the filter that shapes every error.
 */
import { Logger, Module, type DynamicModule } from '@nestjs/common';
import { APP_FILTER } from '@nestjs/core';
import type { GatewayConfig } from '@flywheel/config';
import { SERVICE_METRICS, type ServiceMetrics } from '@flywheel/mesh';
import { Moderator } from '@flywheel/moderation';
import { ApiKeyGuard } from '../auth/api-key.guard';
import { ApiKeyStore, loadApiKeys } from '../auth/api-keys';
import { RateLimiter } from '../auth/rate-limiter';
import { OpenAiExceptionFilter } from '../http/openai-exception.filter';
import { GatewayModeration } from '../moderation/gateway-moderation.service';
import { ModerationClient } from '../moderation/moderation.client';
import { ModerationsController } from '../moderation/moderations.controller';
import { GatewayMetrics } from '../observability/gateway.metrics';
import { RequestObserver } from '../observability/request-observer';
import { CompletionRecords } from './completion-records';
import { CompletionsController } from './completions.controller';
import { GenerationService } from './generation.service';
import { ModelsController } from './models.controller';
import { ModelsService } from './models.service';
import { PolicyClient } from './policy.client';

@Module({})
export class OpenAiModule {
  static forRoot(config: GatewayConfig, moderator: Moderator): DynamicModule {
    return {
      module: OpenAiModule,
      controllers: [CompletionsController, ModelsController, ModerationsController],
      providers: [
        {
          provide: ApiKeyStore,
          useFactory: () => {
            const { store, devKey } = loadApiKeys(config.gateway.api, config.stateDir);
            if (devKey) {
              // The one place a key is printed: the dev key, so `npm start` users can call the API.
              new Logger('ApiKeys').log(
                `no API key configured: ${devKey.created ? 'created' : 'using'} dev key ${devKey.secret} (stored in ${devKey.file})`,
              );
            }
            return store;
          },
        },
        { provide: RateLimiter, useFactory: () => new RateLimiter() },
        { provide: GatewayMetrics, useFactory: (m: ServiceMetrics) => new GatewayMetrics(m.registry), inject: [SERVICE_METRICS] },
        {
          provide: RequestObserver,
          useFactory: (metrics: GatewayMetrics) =>
            new RequestObserver(metrics, {
              instanceId: config.instanceId,
              verbose: config.logLevel === 'debug' || config.logLevel === 'verbose',
              quiet: config.logLevel === 'error' || config.logLevel === 'warn',
            }),
          inject: [GatewayMetrics],
        },
        { provide: Moderator, useValue: moderator },
        { provide: APP_FILTER, useClass: OpenAiExceptionFilter },
        ApiKeyGuard,
        PolicyClient,
        CompletionRecords,
        GenerationService,
        ModelsService,
        ModerationClient,
        GatewayModeration,
      ],
      exports: [ApiKeyStore, RequestObserver],
    };
  }
}
