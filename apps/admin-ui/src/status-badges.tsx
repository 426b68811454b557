/**
 * Status badges shared by several pages: a review item's status (inbox, conversation) and a training run's
 * (runs list, run detail). Their own module so pages do not import each other for them.
 */
import type { ReviewStatus } from '../../../libs/contracts/src/feedback.schemas';
import type { TrainingRun } from '../../../libs/contracts/src/training-runs.schemas';

export function ReviewStatusBadge({ status }: { status: ReviewStatus }) {
  return <span className={`badge badge-${status}`}>{status}</span>;
}

export function RunStatusBadge({ status }: { status: TrainingRun['status'] }) {
  return <span className={`badge run-${status}`}>{status}</span>;
}
