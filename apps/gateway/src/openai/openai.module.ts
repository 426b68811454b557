/**
 * The OpenAI-compatible API: the policy client, completion records on JetStream, moderation (the service
 * client, and the in-process moderator main.ts loaded at boot), metrics and the access-log hooks, and the /v1
 * controllers behind ApiKeyGuard (keys and rate limits from AuthModule), with the Responses API (it reads earlier
 * responses from the store) and vLLM's /tokenize and /detokenize.
 */
import { Module, type DynamicModule } from '@nestjs/common';
import type { GatewayConfig } from '@flywheel/config';
import { SERVICE_METRICS, type ServiceMetrics } from '@flywheel/mesh';
import { servedModeratorProviders, type Moderator } from '@flywheel/moderation';
import { AuthModule } from '../auth/auth.module';
import { StoreModule } from '../store/store.module';
import { GatewayModeration } from '../moderation/gateway-moderation.service';
import { ModerationClient } from '../moderation/moderation.client';
import { ModerationsController } from '../moderation/moderations.controller';
import { GatewayMetrics } from '../observability/gateway.metrics';
import { RequestObserver } from '../observability/request-observer';
import { CompletionRecords } from './completion-records';
import { CompletionsController } from './completions.controller';
import { GenerationService } from './generation.service';
import { OpenAiModelsController } from './openai-models.controller';
import { OpenAiModelsService } from './openai-models.service';
import { PolicyClient } from './policy.client';
import { ResponsesService } from './responses.service';
import { TokenizeController } from './tokenize.controller';
import { TokenizeService } from './tokenize.service';

@Module({})
export class OpenAiModule {
  static forRoot(config: GatewayConfig, moderator: Moderator): DynamicModule {
    return {
      module: OpenAiModule,
      imports: [AuthModule, StoreModule],
      controllers: [CompletionsController, OpenAiModelsController, ModerationsController, TokenizeController],
      providers: [
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
        // The in-process moderator (output gate, prompt fallback) follows promoted moderation versions too.
        ...servedModeratorProviders(moderator, { lexiconPath: config.gateway.moderation.lexiconPath, policyPath: config.gateway.moderation.policyPath }),
        PolicyClient,
        CompletionRecords,
        GenerationService,
        ResponsesService,
        OpenAiModelsService,
        TokenizeService,
        ModerationClient,
        GatewayModeration,
      ],
      exports: [RequestObserver],
    };
  }
}
