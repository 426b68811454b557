import { loadPolicyConfig, POLICY_ENV_DOCS } from './policy.config';

describe('policy config: FLYWHEEL_MODEL_DTYPE', () => {
  it('defaults to auto (Q8_0 GGUF files serve Q8_0, everything else f32)', () => {
    expect(loadPolicyConfig({}).policy.dtype).toBe('auto');
    expect(POLICY_ENV_DOCS.find((d) => d.name === 'FLYWHEEL_MODEL_DTYPE')?.default).toBe('auto');
  });

  it.each(['f32', 'bf16', 'q8_0', 'q4_0', 'q4_1', 'q5_0', 'q5_1', 'q4_k', 'q5_k', 'q6_k', 'q4_k_m', 'q5_k_m', 'auto'] as const)('accepts %s', (dtype) => {
    expect(loadPolicyConfig({ FLYWHEEL_MODEL_DTYPE: dtype }).policy.dtype).toBe(dtype);
  });

  it('names the choices when the value is unknown', () => {
    expect(() => loadPolicyConfig({ FLYWHEEL_MODEL_DTYPE: 'q3_k' })).toThrow(/FLYWHEEL_MODEL_DTYPE must be one of f32, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_k, q5_k, q6_k, q4_k_m, q5_k_m, auto/);
  });
});
