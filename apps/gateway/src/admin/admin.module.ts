/**
 * The admin API and the admin UI's files under /admin: sessions, the guard, the read / review / export
 * services and their routes. Imported by GatewayModule with one line: `AdminModule.forRoot(config)`.
 * The store handle (FlywheelModule) and the key store (OpenAiModule) are looked up across modules when
 * first used, like SharedApiKeyGuard does.
 */
import { Module, type DynamicModule } from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import path from 'node:path';
import type { GatewayConfig } from '@flywheel/config';
import { MeshConnection } from '@flywheel/mesh';
import type { Store } from '@flywheel/store';
import { ApiKeyStore } from '../auth/api-keys';
import { StoreHandle, StoreUnavailableError } from '../flywheel/store.handle';
import { OpenAiError } from '../http/openai-error';
import { AdminAuthService } from './admin-auth.service';
import { AdminExportService } from './admin-export.service';
import { AdminReadService } from './admin-read.service';
import { AdminReviewService } from './admin-review.service';
import { AdminSessionGuard } from './admin-session.guard';
import { AdminSessions } from './admin-sessions';
import { AdminExportsController, AdminReadController, AdminReviewsController, AdminSessionController } from './admin.controllers';
import { ADMIN_UI_DIR, AdminUiController } from './admin-ui.controller';
import { AdminModelsController } from './models.controller';
import { ModelLineageFollower } from './models.lineage';
import { AdminModelsService } from './models.service';
import { AdminLoopService } from './loop.service';
import { AdminLoopController, AdminRunsController } from './runs.controller';
import { AdminRunsService } from './runs.service';

/** The open store, or the 503 an admin request gets while the database is down. */
function storeSourceOf(ref: ModuleRef): () => Store {
  let handle: StoreHandle | null = null;
  return () => {
    const current = handle ?? ref.get(StoreHandle, { strict: false });
    if (!current) throw new Error('StoreHandle is not provided (the flywheel module is missing)');
    handle = current;
    try {
      return current.get();
    } catch (err) {
      if (err instanceof StoreUnavailableError) {
        throw new OpenAiError(503, 'server_error', `The store is unavailable right now (${err.message}). Please retry shortly.`, null, 'store_unavailable', {
          'retry-after': '1',
        });
      }
      throw err;
    }
  };
}

@Module({})
export class AdminModule {
  static forRoot(config: GatewayConfig): DynamicModule {
    const { sessionTtlMs, maxSessions, uiDir } = config.gateway.admin;
    return {
      module: AdminModule,
      // The UI controller last: its /admin/* wildcard must not shadow the API's routes.
      controllers: [AdminSessionController, AdminReadController, AdminReviewsController, AdminExportsController, AdminModelsController, AdminRunsController, AdminLoopController, AdminUiController],
      providers: [
        { provide: AdminSessions, useFactory: () => new AdminSessions(sessionTtlMs, maxSessions) },
        {
          provide: AdminAuthService,
          useFactory: (sessions: AdminSessions, ref: ModuleRef) =>
            new AdminAuthService(sessions, () => {
              const keys = ref.get(ApiKeyStore, { strict: false });
              if (!keys) throw new Error('ApiKeyStore is not provided (the OpenAI module is missing)');
              return keys;
            }),
          inject: [AdminSessions, ModuleRef],
        },
        { provide: AdminReadService, useFactory: (ref: ModuleRef) => new AdminReadService(storeSourceOf(ref)), inject: [ModuleRef] },
        { provide: AdminReviewService, useFactory: (ref: ModuleRef) => new AdminReviewService(storeSourceOf(ref)), inject: [ModuleRef] },
        { provide: AdminExportService, useFactory: (ref: ModuleRef) => new AdminExportService(storeSourceOf(ref)), inject: [ModuleRef] },
        { provide: AdminRunsService, useFactory: (ref: ModuleRef) => new AdminRunsService(storeSourceOf(ref)), inject: [ModuleRef] },
        AdminLoopService,
        { provide: ADMIN_UI_DIR, useValue: path.resolve(uiDir) },
        AdminSessionGuard,
        AdminModelsService,
        { provide: ModelLineageFollower, useFactory: (mesh: MeshConnection, ref: ModuleRef) => new ModelLineageFollower(mesh, storeSourceOf(ref)), inject: [MeshConnection, ModuleRef] },
      ],
    };
  }
}
