/**
 * POST /admin/api/reviews: review decisions, applied by AdminReviewService in one call, the session's admin key
 * as the actor. Behind AdminSessionGuard (CSRF, as on every admin write).
 */
import { Body, Controller, HttpCode, Post, Req, UseGuards } from '@nestjs/common';
import type { IncomingMessage } from 'node:http';
import type { AdminReviewsResponse } from '@flywheel/contracts';
import { AdminReviewService } from './admin-review.service';
import { AdminSessionGuard, adminSessionOf } from './admin-session.guard';

@Controller('admin/api/reviews')
@UseGuards(AdminSessionGuard)
export class AdminReviewsController {
  constructor(private readonly reviews: AdminReviewService) {}

  @Post()
  @HttpCode(200)
  apply(@Body() body: unknown, @Req() req: { raw: IncomingMessage }): Promise<AdminReviewsResponse> {
    return this.reviews.apply(body, adminSessionOf(req.raw).keyId);
  }
}
