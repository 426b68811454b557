import { z } from 'zod';
import { MeshError, toMeshErrorBody } from './mesh.errors';

describe('mesh errors', () => {
  it('turns a zod failure into invalid_payload naming the field', () => {
    const r = z.object({ messages: z.array(z.object({ content: z.string() })) }).safeParse({ messages: [{ content: 1 }] });
    expect(r.success).toBe(false);
    const body = toMeshErrorBody(r.error);
    expect(body).toMatchObject({ code: 'invalid_payload', param: 'messages.0.content' });
    expect(body.message).toMatch(/^messages\.0\.content: /);
  });

  it('keeps a MeshError as it is and hides anything else behind internal', () => {
    expect(toMeshErrorBody(new MeshError('overloaded', 'full'))).toEqual({ code: 'overloaded', message: 'full', param: null });
    expect(toMeshErrorBody(new Error('secret stack detail'))).toEqual({ code: 'internal', message: 'internal error' });
  });

  it('reads errors off the wire, including Nest default shapes', () => {
    expect(MeshError.fromWire({ code: 'timeout', message: 'late' }).code).toBe('timeout');
    const nestShape = MeshError.fromWire({ status: 'error', message: 'There is no matching message handler defined in the remote service.' });
    expect(nestShape.code).toBe('internal');
    expect(nestShape.message).toMatch(/no matching message handler/);
  });
});
