/**
 * The gateway's API keys and per-key rate limits: one ApiKeyStore and one RateLimiter for every module that
 * checks a key (the OpenAI routes and feedback through ApiKeyGuard, so feedback counts against the same limits
 * as completions; the admin login and session guard). Keys are loaded once at boot. Not the checks themselves
 * (api-key.guard.ts, admin-session.guard.ts).
 */
import { Logger, Module } from '@nestjs/common';
import type { GatewayConfig } from '@flywheel/config';
import { SERVICE_CONFIG } from '@flywheel/mesh';
import { ApiKeyStore, loadApiKeys } from './api-keys';
import { RateLimiter } from './rate-limiter';

@Module({
  providers: [
    {
      provide: ApiKeyStore,
      useFactory: (config: GatewayConfig) => {
        const { store, devKey } = loadApiKeys(config.gateway.api, config.stateDir);
        if (devKey) {
          // The one place a key is printed: the dev key, so `npm start` users can call the API.
          new Logger('ApiKeys').log(`no API key configured: ${devKey.created ? 'created' : 'using'} dev key ${devKey.secret} (stored in ${devKey.file})`);
        }
        return store;
      },
      inject: [SERVICE_CONFIG],
    },
    { provide: RateLimiter, useFactory: () => new RateLimiter() },
  ],
  exports: [ApiKeyStore, RateLimiter],
})
export class AuthModule {}
