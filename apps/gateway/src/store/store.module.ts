/**
 * The gateway's one StoreHandle, for every module that reads or writes the store (the flywheel's writer and
 * feedback API, the admin API): imported, never looked up. A request that finds the store down gets 503
 * store_unavailable from the gateway's exception filter. Not the queries (@flywheel/store).
 */
import { Module } from '@nestjs/common';
import type { GatewayConfig } from '@flywheel/config';
import { SERVICE_CONFIG } from '@flywheel/mesh';
import { StoreHandle } from './store.handle';

@Module({
  providers: [
    {
      provide: StoreHandle,
      useFactory: (config: GatewayConfig) => new StoreHandle(config.database.url, config.gateway.store.writerRetryMaxMs),
      inject: [SERVICE_CONFIG],
    },
  ],
  exports: [StoreHandle],
})
export class StoreModule {}
