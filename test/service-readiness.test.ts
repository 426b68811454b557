/**
 * A service is ready only once its NATS handlers are subscribed: a caller that waits on /readyz and then asks on
 * the service's subjects must find a responder. Boots the mesh core of one service in this process against the
 * real NATS, with the transport's start held back, and reads /readyz before and after it.
 */
import { NestApplication } from '@nestjs/core';
import { loadServiceConfig } from '@flywheel/config';
import { bootService, HANDLERS_CONDITION, MeshCoreModule } from '@flywheel/mesh';
import { freePort, getJson, waitFor } from './support/processes';

const NATS_URL = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';

describe('service readiness', () => {
  it('stays 503 until the NATS transport has subscribed, then turns 200', async () => {
    const port = await freePort();
    const config = loadServiceConfig('moderation', { NATS_URL, FLYWHEEL_MODERATION_PORT: String(port), FLYWHEEL_LOG_LEVEL: 'error' });
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    // Nest's app is a proxy that ignores assignments: hold the method back on its prototype.
    const start = NestApplication.prototype.startAllMicroservices;
    const spy = jest.spyOn(NestApplication.prototype, 'startAllMicroservices').mockImplementation(async function (this: NestApplication) {
      await held;
      return start.call(this);
    });
    const booted = bootService({ config, module: MeshCoreModule.forService(config) });
    const readyz = () => getJson(`http://127.0.0.1:${port}/readyz`);
    try {
      // HTTP and the service's own NATS connection are up; its handlers are not.
      const before = await waitFor(async () => {
        const r = await readyz().catch(() => undefined);
        return r?.body?.conditions?.nats === true ? r : undefined;
      }, 15_000, 'readyz with NATS connected');
      expect(before.status).toBe(503);
      expect(before.body.conditions).toEqual({ nats: true, [HANDLERS_CONDITION]: false });

      release();
      const app = await booted;
      try {
        const after = await readyz();
        expect(after.status).toBe(200);
        expect(after.body.conditions).toEqual({ nats: true, [HANDLERS_CONDITION]: true });
      } finally {
        await app.close();
      }
    } finally {
      release();
      spy.mockRestore();
    }
  });
});
