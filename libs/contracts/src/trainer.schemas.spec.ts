// The `sft` job's optional LoRA options: accepted as the CLI passes them, refused with the field named otherwise; the
// checkpoint folder name every training job takes.
import { checkpointFolderNameSchema, dpoJobDataSchema, ktoJobDataSchema, rewardTrainJobDataSchema, sftJobDataSchema } from './trainer.schemas';

describe('sftJobDataSchema lora', () => {
  const base = { modelDir: 'models/stories260K', data: { kind: 'jsonl', path: 'a.jsonl' }, steps: 10, lr: 1e-3 };

  it('is optional and takes rank, alpha and targets', () => {
    expect(sftJobDataSchema.parse(base).lora).toBeUndefined();
    expect(sftJobDataSchema.parse({ ...base, lora: { rank: 8 } }).lora).toEqual({ rank: 8 });
    expect(sftJobDataSchema.parse({ ...base, lora: { rank: 8, alpha: 16, targets: ['q_proj', 'v_proj'] } }).lora).toEqual({
      rank: 8,
      alpha: 16,
      targets: ['q_proj', 'v_proj'],
    });
  });

  it('refuses a bad rank, an unknown or repeated target and unknown keys', () => {
    const issue = (lora: unknown) => {
      const r = sftJobDataSchema.safeParse({ ...base, lora });
      return r.success ? null : r.error.issues[0].path.join('.');
    };
    expect(issue({ rank: 0 })).toBe('lora.rank');
    expect(issue({ rank: 2.5 })).toBe('lora.rank');
    expect(issue({ rank: 8, targets: ['qkv_proj'] })).toBe('lora.targets.0');
    expect(issue({ rank: 8, targets: ['q_proj', 'q_proj'] })).toBe('lora.targets');
    expect(issue({ rank: 8, targets: [] })).toBe('lora.targets');
    expect(issue({ rank: 8, dropout: 0.1 })).toBe('lora');
  });
});

describe('checkpointFolderNameSchema', () => {
  it('takes a plain folder name and refuses what could leave the checkpoints folder or hide in it', () => {
    for (const ok of ['sft-1', 'rm_2.v3', 'A']) expect(checkpointFolderNameSchema.safeParse(ok).success).toBe(true);
    for (const bad of ['', '..', '../x', 'a/b', '.hidden', 'a b', 'x'.repeat(129)]) expect(checkpointFolderNameSchema.safeParse(bad).success).toBe(false);
  });

  it("is every training job's outName", () => {
    const base = { modelDir: 'm', data: { kind: 'jsonl', path: 'a.jsonl' }, steps: 10, lr: 1e-3, batchSize: 2 };
    for (const schema of [sftJobDataSchema, rewardTrainJobDataSchema, dpoJobDataSchema, ktoJobDataSchema]) {
      expect(schema.safeParse({ ...base, outName: 'run-1' }).success).toBe(true);
      const r = schema.safeParse({ ...base, outName: '../x' });
      expect(r.success ? null : r.error.issues[0].path).toEqual(['outName']);
    }
  });
});
