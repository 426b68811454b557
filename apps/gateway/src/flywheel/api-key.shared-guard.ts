/**
 * The OpenAI API's key check (ApiKeyGuard: bearer key, scope, per-key rate limits) for the flywheel's
 * routes, with the very ApiKeyStore and RateLimiter instances the OpenAI module made, so feedback
 * counts against the same per-key limits. Those providers are not exported to this module, hence the
 * lookup by class across modules; it goes away once an auth module exports them.
 */
import { Injectable, type CanActivate, type ExecutionContext } from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import { ApiKeyGuard } from '../auth/api-key.guard';
import { ApiKeyStore } from '../auth/api-keys';
import { RateLimiter } from '../auth/rate-limiter';

@Injectable()
export class SharedApiKeyGuard implements CanActivate {
  private guard: ApiKeyGuard | null = null;

  constructor(private readonly moduleRef: ModuleRef) {}

  canActivate(context: ExecutionContext): boolean {
    this.guard ??= new ApiKeyGuard(this.moduleRef.get(ApiKeyStore, { strict: false }), this.moduleRef.get(RateLimiter, { strict: false }));
    return this.guard.canActivate(context);
  }
}
