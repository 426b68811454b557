/**
 * One prom-client registry per process: default process metrics, `flywheel_service_info` (an up-style
 * info gauge with service/instance/version labels) and `flywheel_nats_connected`. Feature metrics
 * (engine, moderation, training) register on the same registry from their own files.
 */
import { collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import type { ServiceName } from '@flywheel/contracts';

export interface ServiceMetrics {
  registry: Registry;
  natsConnected: Gauge;
}

export function createServiceMetrics(service: ServiceName, instanceId: string, version: string): ServiceMetrics {
  const registry = new Registry();
  registry.setDefaultLabels({ service });
  collectDefaultMetrics({ register: registry, prefix: 'flywheel_' });
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
