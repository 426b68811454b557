import { createServiceMetrics, EVENT_LOOP_SAMPLE_MS } from './service.metrics';

const gauge = async (registry: ReturnType<typeof createServiceMetrics>['registry'], name: string) => {
  const metric = await registry.getSingleMetric(name)!.get();
  return metric.values[0]!.value;
};

describe('service metrics', () => {
  it('samples event-loop lag every EVENT_LOOP_SAMPLE_MS, not prom-client`s 10 ms, so an idle service sleeps', async () => {
    const { registry } = createServiceMetrics('gateway', 'gateway-test', '0.0.0');
    await new Promise((r) => setTimeout(r, EVENT_LOOP_SAMPLE_MS * 3.5));
    await registry.metrics();
    // The histogram's samples are the timer's whole intervals: never shorter than its resolution.
    const min = await gauge(registry, 'flywheel_nodejs_eventloop_lag_min_seconds');
    expect(min).toBeGreaterThanOrEqual((EVENT_LOOP_SAMPLE_MS * 0.9) / 1000);
    // The lag measured at scrape (setImmediate) is unaffected: a quiet loop answers within a few ms.
    expect(await gauge(registry, 'flywheel_nodejs_eventloop_lag_seconds')).toBeLessThan(0.05);
  });
});
