/**
 * One prom-client registry per process: default process metrics, `flywheel_service_info` (an up-style
 * info gauge with service/instance/version labels) and `flywheel_nats_connected`. Feature metrics
 * (engine, moderation, training) register on the same registry from their own files.
 */
import { collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import type { ServiceName } from '@flywheel/contracts';

/** Resolution (ms) of the default event-loop lag metrics' sampling timer. */
export const EVENT_LOOP_SAMPLE_MS = 100;

export interface ServiceMetrics {
  registry: Registry;
  natsConnected: Gauge;
}

export function createServiceMetrics(service: ServiceName, instanceId: string, version: string): ServiceMetrics {
  const registry = new Registry();
  registry.setDefaultLabels({ service });
  // The event-loop lag histogram samples with a timer; prom-client's default (10 ms) wakes every service 100 times a
  // second, about 0.5% of a core each while idle, and on a small machine that is taken from the policy (and charged to
  // every token when traffic is light). 100 ms still gives its percentiles, from ten samples a second.
  collectDefaultMetrics({ register: registry, prefix: 'flywheel_', eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS });
  const info = new Gauge({
    name: 'flywheel_service_info',
    help: 'Always 1 while the service process runs; labels say which service, replica and version',
    labelNames: ['instance', 'version'],
    registers: [registry],
  });
  info.set({ instance: instanceId, version }, 1);
  const natsConnected = new Gauge({
    name: 'flywheel_nats_connected',
    help: '1 while the NATS connection is up, 0 while reconnecting',
    registers: [registry],
  });
  return { registry, natsConnected };
}
