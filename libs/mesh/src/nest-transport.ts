/**
 * The Nest side of the mesh: NATS transport options (queue group, reconnects, our deserializer) and
 * the filter that turns anything a handler throws into a typed MeshError reply. A handler never
 * crashes its service on a bad payload; it answers `invalid_payload` naming the field.
 */
import { randomUUID } from 'node:crypto';
import { Catch, UseFilters, type ArgumentsHost, type RpcExceptionFilter } from '@nestjs/common';
import { Transport, type NatsOptions } from '@nestjs/microservices';
import { JSONCodec } from 'nats';
import { throwError, type Observable } from 'rxjs';
import { nestRequestPacketSchema, queueGroupOf, type ServiceName } from '@flywheel/contracts';
import { toMeshErrorBody } from './mesh.errors';
import { reconnectOptions } from './nats.connection';

/** Marks a request whose bytes were not a Nest packet; handlers' zod parse rejects it. */
export const MALFORMED_PAYLOAD = Object.freeze({ __flywheelMalformed: true as const });

const codec = JSONCodec<unknown>();

/**
 * Nest's own deserializer throws on non-JSON bytes inside its message callback (an unhandled
 * rejection) and treats a raw request without an id as an event, so the caller hangs until timeout.
 * This one maps both to a request carrying MALFORMED_PAYLOAD so the handler replies with an error.
 */
export class SafeNatsDeserializer {
  deserialize(value: Uint8Array, options?: { channel: string; replyTo?: string }) {
    const channel = options?.channel ?? '';
    let decoded: unknown;
    try {
      decoded = codec.decode(value);
    } catch {
      return options?.replyTo ? { pattern: channel, data: MALFORMED_PAYLOAD, id: randomUUID() } : { pattern: channel, data: MALFORMED_PAYLOAD };
    }
    const packet = nestRequestPacketSchema.safeParse(decoded);
    if (packet.success) return packet.data;
    if (typeof decoded === 'object' && decoded !== null && 'pattern' in decoded && 'data' in decoded && !('id' in decoded)) {
      return decoded; // a Nest event (emit): no reply expected
    }
    // A plain NATS request (`nats req subject '{...}'`): treat the whole body as the payload.
    return options?.replyTo ? { pattern: channel, data: decoded, id: randomUUID() } : { pattern: channel, data: decoded };
  }
}

export function natsTransportOptions(service: ServiceName, servers: string[], instanceId: string): NatsOptions {
  return {
    transport: Transport.NATS,
    options: {
      servers,
      name: `${instanceId}/nest`,
      queue: queueGroupOf(service),
      deserializer: new SafeNatsDeserializer(),
      gracefulShutdown: true,
      gracePeriod: 2000,
      ...reconnectOptions(),
    },
  };
}

@Catch()
export class MeshExceptionFilter implements RpcExceptionFilter<unknown> {
  catch(exception: unknown, _host: ArgumentsHost): Observable<never> {
    const body = toMeshErrorBody(exception);
    if (body.code === 'internal') console.error('[mesh] handler failed:', exception);
    return throwError(() => body);
  }
}

/**
 * Put on every controller that has @MessagePattern handlers. Per-controller rather than global because
 * a hybrid Nest app's microservice is initialised with the HTTP app, before global RPC filters can be set.
 */
export const MeshHandlers = () => UseFilters(new MeshExceptionFilter());
