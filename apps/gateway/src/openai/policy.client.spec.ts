/**
 * PolicyClient.generate against a fake mesh: an `overloaded` first answer is asked again (the queue group
 * picks another replica), a bounded number of times; other errors and errors mid-stream are not retried.
 */
import type { GatewayConfig } from '@flywheel/config';
import type { GenerateFrame, GenerateRequestInput } from '@flywheel/contracts';
import { MeshError, type MeshConnection } from '@flywheel/mesh';
import { OVERLOADED_RETRIES, PolicyClient } from './policy.client';

const startFrame = { type: 'start' } as unknown as GenerateFrame;
const endFrame = { type: 'end' } as unknown as GenerateFrame;

/** One scripted answer per call of mesh.client.stream: frames, or an error thrown after `after` frames. */
type Answer = { frames: GenerateFrame[]; error?: MeshError };

function clientWith(answers: Answer[]) {
  const calls: number[] = [];
  const mesh = {
    client: {
      stream: async function* () {
        calls.push(calls.length);
        const answer = answers.shift();
        if (!answer) throw new Error('no scripted answer left');
        for (const f of answer.frames) yield f;
        if (answer.error) throw answer.error;
      },
    },
  };
  const config = { gateway: { api: { generateTimeoutMs: 1000 } }, nats: { requestTimeoutMs: 1000 } };
  const client = new PolicyClient(mesh as unknown as MeshConnection, config as unknown as GatewayConfig);
  return { client, calls };
}

const request = { requestId: 'r1' } as unknown as GenerateRequestInput;
const overloaded = () => new MeshError('overloaded', 'engine queue is full (0 waiting)');

async function collect(gen: AsyncGenerator<GenerateFrame>): Promise<GenerateFrame[]> {
  const out: GenerateFrame[] = [];
  for await (const f of gen) out.push(f);
  return out;
}

describe('PolicyClient.generate', () => {
  it('retries an overloaded refusal and streams what the next replica answers', async () => {
    const { client, calls } = clientWith([{ frames: [], error: overloaded() }, { frames: [], error: overloaded() }, { frames: [startFrame, endFrame] }]);
    await expect(collect(client.generate(request, new AbortController().signal))).resolves.toEqual([startFrame, endFrame]);
    expect(calls).toHaveLength(3);
  });

  it('gives up after OVERLOADED_RETRIES retries with the overloaded error', async () => {
    const answers = Array.from({ length: OVERLOADED_RETRIES + 5 }, () => ({ frames: [], error: overloaded() }));
    const { client, calls } = clientWith(answers);
    await expect(collect(client.generate(request, new AbortController().signal))).rejects.toMatchObject({ code: 'overloaded' });
    expect(calls).toHaveLength(OVERLOADED_RETRIES + 1);
  });

  it('does not retry other errors', async () => {
    const { client, calls } = clientWith([{ frames: [], error: new MeshError('context_length_exceeded', 'too long') }]);
    await expect(collect(client.generate(request, new AbortController().signal))).rejects.toMatchObject({ code: 'context_length_exceeded' });
    expect(calls).toHaveLength(1);
  });

  it('does not retry an error after the first frame', async () => {
    const { client, calls } = clientWith([{ frames: [startFrame], error: overloaded() }, { frames: [startFrame, endFrame] }]);
    const gen = client.generate(request, new AbortController().signal);
    await expect(gen.next()).resolves.toEqual({ done: false, value: startFrame });
    await expect(gen.next()).rejects.toMatchObject({ code: 'overloaded' });
    expect(calls).toHaveLength(1);
  });

  it('stops retrying once the client is gone', async () => {
    const abort = new AbortController();
    abort.abort();
    const { client, calls } = clientWith([{ frames: [], error: overloaded() }, { frames: [startFrame, endFrame] }]);
    await expect(collect(client.generate(request, abort.signal))).rejects.toMatchObject({ code: 'overloaded' });
    expect(calls).toHaveLength(1);
  });
});
