/** Trainer payloads on the mesh. Job data schemas join this file as the training issues land. */
import { z } from 'zod';

export const trainerInfoRequestSchema = z.object({}).strict();
export const trainerInfoSchema = z.object({
  queues: z.record(z.string(), z.record(z.string(), z.number())),
});
export type TrainerInfo = z.infer<typeof trainerInfoSchema>;
