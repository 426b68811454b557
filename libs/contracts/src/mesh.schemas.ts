/**
 * Payload shapes every service shares on the mesh: liveness pings, service info and the typed error
 * that a handler replies with when it cannot serve a request. Feature payloads live in their own files.
 */
import { z } from 'zod';
import { SERVICE_NAMES } from './subjects';

export const serviceNameSchema = z.enum(SERVICE_NAMES);

export const pingRequestSchema = z.object({ from: z.string().min(1).max(200) }).strict();
export type PingRequest = z.infer<typeof pingRequestSchema>;

export const pingReplySchema = z.object({
  service: serviceNameSchema,
  instanceId: z.string(),
  version: z.string(),
  uptimeS: z.number().nonnegative(),
  ready: z.boolean(),
});
export type PingReply = z.infer<typeof pingReplySchema>;

/** Error codes a mesh handler may answer with; the gateway maps them to HTTP statuses. */
export const MESH_ERROR_CODES = [
  'invalid_payload',
  'not_found',
  'overloaded',
  'unavailable',
  'timeout',
  'context_length_exceeded',
  'cancelled',
  'internal',
] as const;
export const meshErrorCodeSchema = z.enum(MESH_ERROR_CODES);
export type MeshErrorCode = z.infer<typeof meshErrorCodeSchema>;

export const meshErrorSchema = z.object({
  code: meshErrorCodeSchema,
  message: z.string(),
  /** Path of the offending field for invalid_payload, e.g. "messages.0.content". */
  param: z.string().nullable().optional(),
});
export type MeshErrorBody = z.infer<typeof meshErrorSchema>;

/**
 * NestJS's NATS wire format (what @nestjs/microservices sends and expects). Our raw-NATS helpers
 * speak it so that plain `nats` clients and Nest message handlers understand each other.
 */
export const nestRequestPacketSchema = z.object({
  pattern: z.string(),
  data: z.unknown(),
  id: z.string(),
});
export type NestRequestPacket = z.infer<typeof nestRequestPacketSchema>;

export const nestReplyPacketSchema = z.object({
  id: z.string(),
  response: z.unknown().optional(),
  err: z.unknown().optional(),
  isDisposed: z.boolean().optional(),
});
export type NestReplyPacket = z.infer<typeof nestReplyPacketSchema>;

/**
 * Stream multiplexing: the replies of many streamed requests in one NATS message. A caller that asks for it sends
 * `STREAM_MUX_HEADER: "<mux subject> <stream number>"` with a streamed request; an answerer that honours it publishes
 * that stream's `response` packets as `[stream number, response]` entries of a message to the mux subject, batched
 * with every other stream bound there in the same tick (one message per engine step, not one per request). The final
 * packet (isDisposed, or err) still goes to the request's own reply subject, on the same connection and after the
 * entries, so it never overtakes them. An answerer that does not know the header just replies as usual.
 */
export const STREAM_MUX_HEADER = 'Flywheel-Mux';
export const streamMuxRouteSchema = z
  .string()
  .regex(/^[^\s*>]+ (0|[1-9]\d{0,15})$/, 'a mux route is "<subject> <stream number>"')
  .transform((v) => {
    const [subject, stream] = v.split(' ');
    return { subject: subject!, stream: Number(stream) };
  });
export type StreamMuxRoute = z.infer<typeof streamMuxRouteSchema>;
export const streamMuxMessageSchema = z.array(z.tuple([z.number().int().nonnegative(), z.unknown()]));
export type StreamMuxEntry = z.infer<typeof streamMuxMessageSchema>[number];

/** A gateway-side view of one service's health, as /healthz reports it. */
export const serviceHealthSchema = z.object({
  status: z.enum(['up', 'down']),
  latencyMs: z.number().optional(),
  instanceId: z.string().optional(),
  version: z.string().optional(),
  error: z.string().optional(),
});
export type ServiceHealth = z.infer<typeof serviceHealthSchema>;

export const healthReportSchema = z.object({
  status: z.enum(['ok', 'degraded']),
  services: z.record(serviceNameSchema, serviceHealthSchema),
});
export type HealthReport = z.infer<typeof healthReportSchema>;
