/** The PolicyInfo the gateway's unit specs plan against: a 512-token, 512-id model with a chat template. Tests only. */
import type { PolicyInfo } from '@flywheel/contracts';

export const testPolicyInfo = (overrides: Partial<PolicyInfo> = {}): PolicyInfo => ({
  model: 'tiny',
  policyVersion: 'v1',
  loadedAt: 1,
  contextLength: 512,
  vocabSize: 512,
  dtype: 'f32',
  instanceId: 'policy-1',
  hasChatTemplate: true,
  toolCallFormat: 'hermes',
  reasoning: null,
  ...overrides,
});
