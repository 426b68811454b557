/**
 * One socket write per event-loop turn for a NATS connection, instead of one per callback that published. nats.js
 * writes what is pending in a microtask after the first command, so every HTTP request the gateway handles (each its
 * own I/O callback) costs its own write for each NATS command it sends: the moderation check, the generate request,
 * the completion record. On loopback each write also wakes nats-server, and on this project's two-core machines
 * those writes were the largest single item of the gateway's per-request CPU. Deferred to the check phase, the
 * commands of every callback of one poll phase leave together (a command on an idle connection still leaves in the
 * same turn). Not for a connection whose process then runs long synchronous work in an immediate before the write
 * (the policy's Nest connection: an inline engine step would hold its frames back a step).
 *
 * It replaces nats.js's ProtocolHandler.sendCommand on this one connection (nats 2.29, pinned by the lockfile); when
 * the handler does not have the expected shape it leaves the connection as it is and says so by returning false.
 */
import type { NatsConnection } from 'nats';

interface OutboundLike {
  size(): number;
  fill(buf: Uint8Array, ...payloads: unknown[]): void;
}

interface ProtocolLike {
  outbound: OutboundLike;
  pendingLimit: number;
  sendCommand(cmd: string | Uint8Array, ...payloads: unknown[]): void;
  flushPending(): void;
}

const encoder = new TextEncoder();
const coalesced = new WeakSet<NatsConnection>();

/** True when the connection now writes once per event-loop turn (also when it already did). */
export function coalesceWrites(nc: NatsConnection): boolean {
  if (coalesced.has(nc)) return true;
  const protocol = (nc as unknown as { protocol?: Partial<ProtocolLike> }).protocol;
  if (!isProtocolLike(protocol)) return false;
  let scheduled = false;
  const flush = () => {
    scheduled = false;
    protocol.flushPending();
  };
  protocol.sendCommand = (cmd, ...payloads) => {
    protocol.outbound.fill(typeof cmd === 'string' ? encoder.encode(cmd) : cmd, ...payloads);
    // As nats.js does: a buffer past its limit goes out at once, whatever is scheduled.
    if (protocol.outbound.size() >= protocol.pendingLimit) return protocol.flushPending();
    if (!scheduled) {
      scheduled = true;
      setImmediate(flush);
    }
  };
  coalesced.add(nc);
  return true;
}

function isProtocolLike(p: Partial<ProtocolLike> | undefined): p is ProtocolLike {
  return (
    p !== undefined &&
    typeof p.sendCommand === 'function' &&
    typeof p.flushPending === 'function' &&
    typeof p.pendingLimit === 'number' &&
    typeof p.outbound?.fill === 'function' &&
    typeof p.outbound.size === 'function'
  );
}
