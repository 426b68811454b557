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
