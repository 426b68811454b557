/**
 * The admin API and the admin UI's files under /admin: sessions, the guard, the read / review / export / runs /
 * models / loop / A/B services and their routes, and the follower that records model lineage in the store. Keys come
 * from AuthModule and the store from StoreModule, both imported; a request that finds the store down gets the
 * exception filter's 503. Imported by GatewayModule with one line: `AdminModule.forRoot(config)`.
 */
import { AdminModerationLabelsController, AdminModerationLabelsService, AdminModerationTrainController, AdminModerationTrainService } from './admin-moderation-labels.controller';
import { Module, type DynamicModule } from '@nestjs/common';
import path from 'node:path';
import type { GatewayConfig } from '@flywheel/config';
import { ApiKeyStore } from '../auth/api-keys';
import { AuthModule } from '../auth/auth.module';
import { StoreHandle } from '../store/store.handle';
import { StoreModule } from '../store/store.module';
import { AdminAbController } from './admin-ab.controller';
import { AdminAbService } from './admin-ab.service';
import { AdminAuthService } from './admin-auth.service';
import { AdminExportService } from './admin-export.service';
import { AdminExportsController } from './admin-exports.controller';
import { AdminLoopController } from './admin-loop.controller';
import { AdminLoopService } from './admin-loop.service';
import { AdminModelsController } from './admin-models.controller';
import { AdminModelsService } from './admin-models.service';
import { AdminReadController } from './admin-read.controller';
import { AdminReadService } from './admin-read.service';
import { AdminReviewService } from './admin-review.service';
import { AdminReviewsController } from './admin-reviews.controller';
import { AdminRunsController } from './admin-runs.controller';
import { AdminRunsService } from './admin-runs.service';
import { AdminSessionController } from './admin-session.controller';
import { AdminSessionGuard } from './admin-session.guard';
import { AdminSessions } from './admin-sessions';
import { ADMIN_UI_DIR, AdminUiController } from './admin-ui.controller';
import { ModelLineageFollower } from './models.lineage';

@Module({})
export class AdminModule {
  static forRoot(config: GatewayConfig): DynamicModule {
    const { sessionTtlMs, maxSessions, uiDir, reviewOverlap } = config.gateway.admin;
    return {
      module: AdminModule,
      imports: [AuthModule, StoreModule],
      // The UI controller last: its /admin/* wildcard must not shadow the API's routes.
      controllers: [AdminSessionController, AdminReadController, AdminReviewsController, AdminExportsController, AdminModelsController, AdminRunsController, AdminLoopController, AdminModerationLabelsController, AdminModerationTrainController, AdminAbController, AdminUiController],
      providers: [
        { provide: AdminSessions, useFactory: () => new AdminSessions(sessionTtlMs, maxSessions) },
        { provide: AdminAuthService, useFactory: (sessions: AdminSessions, keys: ApiKeyStore) => new AdminAuthService(sessions, keys), inject: [AdminSessions, ApiKeyStore] },
        { provide: AdminReadService, useFactory: (store: StoreHandle) => new AdminReadService(store, reviewOverlap), inject: [StoreHandle] },
        { provide: AdminReviewService, useFactory: (store: StoreHandle) => new AdminReviewService(store, { overlap: reviewOverlap }), inject: [StoreHandle] },
        AdminModerationLabelsService,
        AdminModerationTrainService,
        AdminExportService,
        AdminRunsService,
        AdminLoopService,
        AdminModelsService,
        AdminAbService,
        AdminSessionGuard,
        ModelLineageFollower,
        { provide: ADMIN_UI_DIR, useValue: path.resolve(uiDir) },
      ],
    };
  }
}
