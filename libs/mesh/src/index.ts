/**
 * libs/mesh: how services reach each other over NATS (connection, Nest transport, request and
 * streaming helpers, JetStream setup) and what every service exposes (health, readiness, metrics).
 */
export * from './mesh.errors';
export * from './nats.connection';
export * from './nats.write-coalescing';
export * from './jetstream.setup';
export * from './jetstream.publish';
export * from './mesh.client';
export * from './stream-mux.demux';
export * from './stream-mux.publisher';
export * from './mesh.connection';
export * from './nest-transport';
export * from './service.metrics';
export * from './readiness';
export * from './mesh-core.module';
export * from './service.bootstrap';
export * from './checkpoint-store';
export * from './model-registry';
export * from './active-model.source';
export * from './served-versions';
