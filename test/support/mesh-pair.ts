/**
 * A caller and a responder on a private nats-server, for tests of MeshClient's waits (mesh-stream, stream-mux): the
 * caller's connection with its MeshClient, a second connection that answers, and one stop for all three; and what
 * those tests' responders speak (JSON packets, `{echo}` replies).
 */
import { connect, JSONCodec, type NatsConnection } from 'nats';
import { z } from 'zod';
import { MeshClient } from '@flywheel/mesh';
import { startPrivateNats } from '../gateway.support';

export const codec = JSONCodec<unknown>();
export const echo = z.object({ echo: z.string() });
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface MeshPair {
  url: string;
  caller: NatsConnection;
  responder: NatsConnection;
  mesh: MeshClient;
  stop(): Promise<void>;
}

export async function startMeshPair(): Promise<MeshPair> {
  const nats = await startPrivateNats();
  const caller = await connect({ servers: nats.url });
  const responder = await connect({ servers: nats.url });
  return {
    url: nats.url,
    caller,
    responder,
    mesh: new MeshClient(caller),
    stop: async () => {
      await caller.close();
      await responder.close();
      await nats.stop();
    },
  };
}
