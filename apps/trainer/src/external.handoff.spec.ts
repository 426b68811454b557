/**
 * The external stage's hand-off folder: which data files it writes (train side only: lines on held-out prompts left
 * out), that every TRL / OpenRLHF command names a file that exists with the right columns and writes where the
 * manifest says, the publish command the waiting stage answers to, and the folder on disk (models linked, scripts
 * executable, a first deadline kept). Also which published checkpoints the stage takes.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { planHandoff, readHandoffManifest, trainSideLines, writeHandoff, type HandoffInput } from './external.handoff';
import { unusableCheckpoint } from './external.stage';

const user = (content: string) => [{ role: 'user' as const, content }];
const pair = (q: string) => JSON.stringify({ prompt: user(q), chosen: [{ role: 'assistant', content: `good ${q}` }], rejected: [{ role: 'assistant', content: `bad ${q}` }] });
const answer = (q: string) => JSON.stringify({ messages: [...user(q), { role: 'assistant', content: `answer ${q}` }] });

function input(over: Partial<HandoffInput> = {}): HandoffInput {
  return {
    loopRunId: 'loop-7-abc',
    base: { version: 'base', dir: '/models/base' },
    reward: { version: 'rm-loop-7-abc-rm', dir: '/models/rm' },
    preference: [pair('cat'), pair('dog'), pair('duck'), pair('cat')].join('\n') + '\n',
    sft: [answer('cat'), answer('duck')].join('\n'),
    trainPrompts: [{ prompt: user('cat') }, { prompt: user('dog'), reference: { answer: 'woof' } }],
    heldout: [user('duck')],
    sampling: { maxNewTokens: 48, seed: 3 },
    publish: { version: 'loop-7-abc-external', natsUrl: 'nats://mesh:4222' },
    createdAt: '2026-01-01T00:00:00.000Z',
    waitUntil: '2026-01-08T00:00:00.000Z',
    ...over,
  };
}

const fileOf = (plan: ReturnType<typeof planHandoff>, name: string): string => {
  const f = plan.files.find((x) => x.name === name);
  if (!f) throw new Error(`no ${name} in the plan: ${plan.files.map((x) => x.name).join(', ')}`);
  return f.content;
};
const rowsOf = (text: string) => text.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);

describe('trainSideLines', () => {
  it('drops the lines on held-out prompts (preference prompt, or sft messages up to the answer) and keeps the rest in order', () => {
    expect(trainSideLines([pair('cat'), pair('duck'), '', pair('dog')].join('\n'), [user('duck')])).toEqual({ lines: [pair('cat'), pair('dog')], dropped: 1 });
    expect(trainSideLines([answer('duck'), answer('cat')].join('\n'), [user('duck')])).toEqual({ lines: [answer('cat')], dropped: 1 });
  });
});

describe('planHandoff', () => {
  it('writes the approved data as TRL conversational JSONL, train side only', () => {
    const plan = planHandoff(input());
    const prefs = rowsOf(fileOf(plan, 'preference.jsonl'));
    expect(prefs).toHaveLength(3);
    expect(prefs[0]).toEqual({ prompt: user('cat'), chosen: [{ role: 'assistant', content: 'good cat' }], rejected: [{ role: 'assistant', content: 'bad cat' }] });
    expect(prefs.map((p) => p.prompt)).not.toContainEqual(user('duck'));
    expect(rowsOf(fileOf(plan, 'sft.jsonl'))).toEqual([{ messages: [...user('cat'), { role: 'assistant', content: 'answer cat' }] }]);
    expect(rowsOf(fileOf(plan, 'prompts.jsonl'))).toEqual([{ prompt: user('cat') }, { prompt: user('dog'), reference: { answer: 'woof' } }]);
    expect(plan.manifest).toMatchObject({
      loop_run_id: 'loop-7-abc',
      base_version: 'base',
      base_model: 'base-model',
      reward_model: 'reward-model',
      heldout_prompts: 1,
      heldout_rows_dropped: 2,
      data: { preference: { file: 'preference.jsonl', rows: 3 }, sft: { file: 'sft.jsonl', rows: 1 }, prompts: { file: 'prompts.jsonl', rows: 2 } },
      wait_until: '2026-01-08T00:00:00.000Z',
    });
    expect(plan.models).toEqual([
      { name: 'base-model', from: '/models/base' },
      { name: 'reward-model', from: '/models/rm' },
    ]);
  });

  it('gives TRL sft/dpo/grpo configs and OpenRLHF commands on the right files, each writing where the manifest says', () => {
    const plan = planHandoff(input());
    expect(Object.keys(plan.manifest.commands).sort()).toEqual(['openrlhf-dpo', 'openrlhf-sft', 'trl-dpo', 'trl-grpo', 'trl-sft']);
    const sft = fileOf(plan, 'trl/sft.yaml');
    expect(sft).toMatch(/^model_name_or_path: "base-model"$/m);
    expect(sft).toMatch(/^ {4}data_files: sft\.jsonl$/m);
    expect(sft).toMatch(/^output_dir: "out\/trl-sft"$/m);
    expect(sft).toMatch(/^seed: 3$/m);
    const dpo = fileOf(plan, 'trl/dpo.yaml');
    expect(dpo).toMatch(/^ {4}data_files: preference\.jsonl$/m);
    expect(dpo).toMatch(/^beta: 0\.1$/m);
    const grpo = fileOf(plan, 'trl/grpo.yaml');
    expect(grpo).toMatch(/^ {4}data_files: prompts\.jsonl$/m);
    expect(grpo).toMatch(/^reward_model_name_or_path: "reward-model"$/m);
    expect(grpo).toMatch(/^max_completion_length: 48$/m);
    expect(fileOf(plan, 'trl-sft.sh')).toContain('trl sft --config trl/sft.yaml "$@"');
    expect(fileOf(plan, 'trl-dpo.sh')).toContain('trl dpo --config trl/dpo.yaml "$@"');
    expect(fileOf(plan, 'trl-grpo.sh')).toContain('trl grpo --config trl/grpo.yaml "$@"');
    const orSft = fileOf(plan, 'openrlhf-sft.sh');
    expect(orSft).toContain('deepspeed --module openrlhf.cli.train_sft');
    expect(orSft).toContain('--data.dataset sft.jsonl --data.input_key messages --data.apply_chat_template');
    expect(orSft).toContain('--model.model_name_or_path base-model');
    expect(orSft).toContain('--ckpt.output_dir out/openrlhf-sft');
    const orDpo = fileOf(plan, 'openrlhf-dpo.sh');
    expect(orDpo).toContain('deepspeed --module openrlhf.cli.train_dpo');
    expect(orDpo).toContain('--data.dataset preference.jsonl --data.prompt_key prompt --data.chosen_key chosen --data.rejected_key rejected');
    for (const [name, c] of Object.entries(plan.manifest.commands)) {
      const body = fileOf(plan, c.script) + (c.config ? fileOf(plan, c.config) : '');
      expect([name, body.includes(c.output)]).toEqual([name, true]);
      expect(plan.files.find((f) => f.name === c.script)?.executable).toBe(true);
    }
  });

  it('names the exact publish command the waiting stage answers to, in the script, the manifest and the README', () => {
    const plan = planHandoff(input());
    expect(plan.manifest.publish).toEqual({ version: 'loop-7-abc-external', command: 'flywheel models publish --run loop-7-abc --dir OUTPUT_DIR --version loop-7-abc-external --parent base' });
    const publish = fileOf(plan, 'publish.sh');
    expect(publish).toContain("models publish --run 'loop-7-abc' --dir \"$OUT\" --version 'loop-7-abc-external' --parent 'base'");
    expect(publish).toContain('NATS_URL="${NATS_URL:-nats://mesh:4222}"');
    const readme = fileOf(plan, 'README.md');
    expect(readme).toContain('flywheel models publish --run loop-7-abc --dir out/<trainer>');
    for (const f of ['sft.jsonl', 'preference.jsonl', 'prompts.jsonl', 'bash trl-dpo.sh', 'bash openrlhf-sft.sh', '2026-01-08T00:00:00.000Z']) expect(readme).toContain(f);
  });

  it('offers only what the data supports: no SFT without approved answers, no GRPO without a reward model', () => {
    const plan = planHandoff(input({ sft: null, reward: null }));
    const names = plan.files.map((f) => f.name);
    expect(names).not.toContain('sft.jsonl');
    expect(names).not.toContain('trl/grpo.yaml');
    expect(Object.keys(plan.manifest.commands).sort()).toEqual(['openrlhf-dpo', 'trl-dpo']);
    expect(plan.models.map((m) => m.name)).toEqual(['base-model']);
    expect(plan.manifest.reward_model).toBeNull();
  });
});

describe('writeHandoff', () => {
  const root = mkdtempSync(path.join(os.tmpdir(), 'flywheel-handoff-'));
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it('writes the files, executable scripts and the model folders, and reads its manifest back', () => {
    const base = path.join(root, 'base');
    mkdirSync(base);
    writeFileSync(path.join(base, 'config.json'), '{}');
    writeFileSync(path.join(base, 'model.safetensors'), 'weights');
    writeFileSync(path.join(base, '.flywheel-complete'), 'x');
    const dir = path.join(root, 'handoff', 'loop-7-abc');
    const plan = planHandoff(input({ base: { version: 'base', dir: base }, reward: null }));
    writeHandoff(dir, plan);
    expect(readFileSync(path.join(dir, 'preference.jsonl'), 'utf8')).toBe(fileOf(plan, 'preference.jsonl'));
    expect(readFileSync(path.join(dir, 'trl', 'dpo.yaml'), 'utf8')).toBe(fileOf(plan, 'trl/dpo.yaml'));
    expect(statSync(path.join(dir, 'publish.sh')).mode & 0o111).not.toBe(0);
    expect(readFileSync(path.join(dir, 'base-model', 'model.safetensors'), 'utf8')).toBe('weights');
    expect(existsSync(path.join(dir, 'base-model', '.flywheel-complete'))).toBe(false);
    expect(readHandoffManifest(dir)).toEqual(plan.manifest);
    // Written again (a loop job run again): same content, nothing left half-written.
    writeHandoff(dir, plan);
    expect(readHandoffManifest(dir)).toEqual(plan.manifest);
    expect(readHandoffManifest(path.join(root, 'nowhere'))).toBeNull();
  });
});

describe('unusableCheckpoint', () => {
  const files = (...names: string[]) => ({ files: names.map((name) => ({ name, bytes: 1 })) });
  it('takes an HF folder with safetensors and a tokenizer, and says what is missing otherwise', () => {
    expect(unusableCheckpoint(files('config.json', 'model-00001-of-00002.safetensors', 'model.safetensors.index.json', 'tokenizer.json', 'tokenizer_config.json'))).toBeNull();
    expect(unusableCheckpoint(files('config.json', 'pytorch_model.bin', 'tokenizer.json'))).toMatch(/no \.safetensors/);
    expect(unusableCheckpoint(files('model.safetensors', 'tokenizer.json'))).toMatch(/no config\.json/);
    expect(unusableCheckpoint(files('config.json', 'model.safetensors'))).toMatch(/no tokenizer\.json/);
  });
});
