/**
 * The hand-off folder of an `external` loop stage (<state>/handoff/<loop run id>/): the approved data as the
 * conversational JSONL that TRL and OpenRLHF read (only the train side of the loop's prompt split: the held-out
 * prompts stay unseen for the eval gate), the base policy and the run's reward model as Hugging Face folders, TRL
 * configs and ready-to-run scripts for TRL (`trl sft|dpo|grpo`) and OpenRLHF (train_sft / train_dpo), the exact
 * `flywheel models publish --run` that brings the result back, a README for the operator and a manifest.
 * planHandoff is pure (what to write); writeHandoff puts a plan on disk. Not the waiting (external.stage.ts).
 */
import { copyFileSync, existsSync, linkSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import type { RewardReference } from '@flywheel/contracts';
import { parsePromptSet, type Prompt } from '@flywheel/rl';

/** Where each output lands inside the hand-off folder (relative, so the folder can be copied to a cluster whole). */
const OUT = { trlSft: 'out/trl-sft', trlDpo: 'out/trl-dpo', trlGrpo: 'out/trl-grpo', openrlhfSft: 'out/openrlhf-sft', openrlhfDpo: 'out/openrlhf-dpo' } as const;

export interface HandoffInput {
  loopRunId: string;
  /** The policy version the cluster starts from (the loop's active version) and its local checkpoint folder. */
  base: { version: string; dir: string };
  /** The run's reward model (TRL GRPO's reward model); null: none handed off. */
  reward: { version: string; dir: string } | null;
  /** The loop's preference pairs: `{"prompt": [...], "chosen": [...], "rejected": [...]}` lines. */
  preference: string;
  /** Approved answers and corrections (`{"messages": [...]}` lines), when the run carries them. */
  sft: string | null;
  /** Train-side prompts (with their reference columns) for GRPO's prompts.jsonl. */
  trainPrompts: Array<{ prompt: Prompt; reference?: RewardReference }>;
  /** Prompts the eval gate keeps: no line whose prompt is one of these is handed off. */
  heldout: Prompt[];
  /** Generation length and seed of the loop's policy stage (GRPO's completions, every trainer's seed). */
  sampling: { maxNewTokens: number; seed: number };
  /** The version the publish command names, and the NATS the loop listens on (a default; NATS_URL wins). */
  publish: { version: string; natsUrl: string };
  createdAt: string;
  waitUntil: string;
}

/** handoff.json: what a script or person needs to find the files and bring the result back. */
export const handoffManifestSchema = z.object({
  loop_run_id: z.string(),
  created_at: z.string(),
  wait_until: z.string(),
  base_version: z.string(),
  base_model: z.string(),
  reward_version: z.string().nullable(),
  reward_model: z.string().nullable(),
  data: z.record(z.string(), z.object({ file: z.string(), rows: z.int(), format: z.string() })),
  heldout_prompts: z.int(),
  heldout_rows_dropped: z.int(),
  commands: z.record(z.string(), z.object({ script: z.string(), output: z.string(), config: z.string().nullable() })),
  publish: z.object({ version: z.string(), command: z.string() }),
});
export type HandoffManifest = z.infer<typeof handoffManifestSchema>;

export interface HandoffPlan {
  /** Text files by path relative to the hand-off folder; `executable` ones are the scripts. */
  files: Array<{ name: string; content: string; executable?: boolean }>;
  /** Model folders to place (hard-linked, else copied) under `name`. */
  models: Array<{ name: string; from: string }>;
  manifest: HandoffManifest;
}

/** A JSONL line's prompt as the loop keys prompts (libs/rl parsePromptSet), or null for a line without one. */
function promptKeyOf(line: string): string | null {
  try {
    const [prompt] = parsePromptSet(line, 'line').prompts;
    return prompt ? JSON.stringify(prompt) : null;
  } catch {
    return null;
  }
}

/** The lines of `text` whose prompt is not held out, and how many were. */
export function trainSideLines(text: string, heldout: readonly Prompt[]): { lines: string[]; dropped: number } {
  const held = new Set(heldout.map((p) => JSON.stringify(p)));
  const lines: string[] = [];
  let dropped = 0;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '') continue;
    const key = promptKeyOf(line);
    if (key !== null && held.has(key)) dropped++;
    else lines.push(line);
  }
  return { lines, dropped };
}

const jsonl = (lines: readonly string[]): string => (lines.length === 0 ? '' : `${lines.join('\n')}\n`);
/** Single-quoted for sh. */
const sq = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

function script(what: string, body: string[]): string {
  return ['#!/usr/bin/env bash', `# ${what}`, '# Run from anywhere: paths are relative to this folder. Extra arguments are passed on.', 'set -euo pipefail', 'cd "$(dirname "$0")"', ...body, ''].join('\n');
}

/** A TRL CLI config: YAML of scalars and the one `datasets` list (written by hand: no YAML library needed). */
function trlConfig(title: string, data: string, fields: Array<[string, string | number | boolean]>): string {
  return [
    `# ${title}`,
    '# Read by `trl <command> --config <this file>` from the hand-off folder (TRL >= 0.20: the `datasets` list);',
    '# on an older TRL put the file in its own folder and pass --dataset_name <that folder> instead.',
    'datasets:',
    '  - path: json',
    `    data_files: ${data}`,
    '    split: train',
    ...fields.map(([k, v]) => `${k}: ${typeof v === 'string' ? JSON.stringify(v) : String(v)}`),
    '',
  ].join('\n');
}

export function planHandoff(o: HandoffInput): HandoffPlan {
  const files: HandoffPlan['files'] = [];
  const data: HandoffManifest['data'] = {};
  const commands: HandoffManifest['commands'] = {};
  const seed = o.sampling.seed;
  const common: Array<[string, string | number | boolean]> = [
    ['model_name_or_path', 'base-model'],
    ['num_train_epochs', 1],
    ['bf16', true],
    ['logging_steps', 10],
    ['save_strategy', 'no'],
    ['report_to', 'none'],
    ['seed', seed],
  ];

  const preference = trainSideLines(o.preference, o.heldout);
  const sft = o.sft === null ? { lines: [], dropped: 0 } : trainSideLines(o.sft, o.heldout);
  const prompts = o.trainPrompts.map((p) => JSON.stringify({ prompt: p.prompt, ...(p.reference ? { reference: p.reference } : {}) }));

  if (sft.lines.length > 0) {
    files.push({ name: 'sft.jsonl', content: jsonl(sft.lines) });
    data.sft = { file: 'sft.jsonl', rows: sft.lines.length, format: '{"messages": [...]} (TRL conversational language modeling; OpenRLHF --data.input_key messages)' };
    files.push({ name: 'trl/sft.yaml', content: trlConfig('TRL SFT of the base policy on the approved answers and corrections.', 'sft.jsonl', [...common, ['output_dir', OUT.trlSft], ['learning_rate', 1e-5], ['per_device_train_batch_size', 8], ['max_length', 2048]]) });
    files.push({ name: 'trl-sft.sh', executable: true, content: script(`TRL SFT on sft.jsonl → ${OUT.trlSft} (Hugging Face format).`, ['trl sft --config trl/sft.yaml "$@"']) });
    commands['trl-sft'] = { script: 'trl-sft.sh', output: OUT.trlSft, config: 'trl/sft.yaml' };
    files.push({
      name: 'openrlhf-sft.sh',
      executable: true,
      content: script(`OpenRLHF SFT on sft.jsonl → ${OUT.openrlhfSft} (Hugging Face format). Flags of OpenRLHF >= 0.10; older releases spell them without the prefix (--pretrain, --dataset, --input_key, --save_path, ...).`, [
        'deepspeed --module openrlhf.cli.train_sft \\',
        '  --model.model_name_or_path base-model \\',
        '  --data.dataset sft.jsonl --data.input_key messages --data.apply_chat_template --data.max_len 2048 \\',
        '  --train.batch_size 128 --train.micro_batch_size 2 --train.max_epochs 1 --train.seed ' + String(seed) + ' \\',
        '  --adam.lr 5e-6 --ds.zero_stage 2 --ds.param_dtype bf16 \\',
        `  --ckpt.output_dir ${OUT.openrlhfSft} --ckpt.save_steps -1 --logger.logging_steps 1 --eval.steps -1 "$@"`,
      ]),
    });
    commands['openrlhf-sft'] = { script: 'openrlhf-sft.sh', output: OUT.openrlhfSft, config: null };
  }

  if (preference.lines.length > 0) {
    files.push({ name: 'preference.jsonl', content: jsonl(preference.lines) });
    data.preference = { file: 'preference.jsonl', rows: preference.lines.length, format: '{"prompt": [...], "chosen": [assistant], "rejected": [assistant]} (TRL conversational preference)' };
    files.push({ name: 'trl/dpo.yaml', content: trlConfig('TRL DPO of the base policy on the approved preference pairs.', 'preference.jsonl', [...common, ['output_dir', OUT.trlDpo], ['learning_rate', 5e-7], ['beta', 0.1], ['per_device_train_batch_size', 8], ['max_length', 2048]]) });
    files.push({ name: 'trl-dpo.sh', executable: true, content: script(`TRL DPO on preference.jsonl → ${OUT.trlDpo} (Hugging Face format).`, ['trl dpo --config trl/dpo.yaml "$@"']) });
    commands['trl-dpo'] = { script: 'trl-dpo.sh', output: OUT.trlDpo, config: 'trl/dpo.yaml' };
    files.push({
      name: 'openrlhf-dpo.sh',
      executable: true,
      content: script(`OpenRLHF DPO on preference.jsonl → ${OUT.openrlhfDpo} (Hugging Face format). Flags of OpenRLHF >= 0.10; older releases spell them without the prefix (--pretrain, --dataset, --prompt_key, --save_path, --beta, ...).`, [
        'deepspeed --module openrlhf.cli.train_dpo \\',
        '  --model.model_name_or_path base-model --model.beta 0.1 \\',
        '  --data.dataset preference.jsonl --data.prompt_key prompt --data.chosen_key chosen --data.rejected_key rejected \\',
        '  --data.apply_chat_template --data.max_len 2048 \\',
        '  --train.batch_size 128 --train.micro_batch_size 1 --train.max_epochs 1 --train.seed ' + String(seed) + ' \\',
        '  --adam.lr 5e-7 --ds.zero_stage 3 --ds.param_dtype bf16 \\',
        `  --ckpt.output_dir ${OUT.openrlhfDpo} --ckpt.save_steps -1 --logger.logging_steps 1 --eval.steps -1 "$@"`,
      ]),
    });
    commands['openrlhf-dpo'] = { script: 'openrlhf-dpo.sh', output: OUT.openrlhfDpo, config: null };
  }

  if (prompts.length > 0) {
    files.push({ name: 'prompts.jsonl', content: jsonl(prompts) });
    data.prompts = { file: 'prompts.jsonl', rows: prompts.length, format: '{"prompt": [...]} (TRL conversational prompt-only; `reference` columns reach reward functions)' };
    if (o.reward) {
      files.push({
        name: 'trl/grpo.yaml',
        content: trlConfig('TRL GRPO of the base policy on the train-side prompts, scored by the loop run\'s reward model.', 'prompts.jsonl', [
          ...common,
          ['output_dir', OUT.trlGrpo],
          ['reward_model_name_or_path', 'reward-model'],
          ['learning_rate', 1e-6],
          ['beta', 0.04],
          ['num_generations', 8],
          ['per_device_train_batch_size', 8],
          ['max_completion_length', o.sampling.maxNewTokens],
        ]),
      });
      files.push({ name: 'trl-grpo.sh', executable: true, content: script(`TRL GRPO on prompts.jsonl with reward-model/ → ${OUT.trlGrpo} (Hugging Face format).`, ['trl grpo --config trl/grpo.yaml "$@"']) });
      commands['trl-grpo'] = { script: 'trl-grpo.sh', output: OUT.trlGrpo, config: 'trl/grpo.yaml' };
    }
  }

  const publishCommand = `flywheel models publish --run ${o.loopRunId} --dir OUTPUT_DIR --version ${o.publish.version} --parent ${o.base.version}`;
  files.push({
    name: 'publish.sh',
    executable: true,
    content: [
      '#!/usr/bin/env bash',
      '# Brings a trained checkpoint back: publishes OUTPUT_DIR (a Hugging Face folder: config.json, model.safetensors or',
      `# shards, tokenizer files) as ${o.publish.version} under loop run ${o.loopRunId}, whose external stage then evaluates it.`,
      '# Needs the flywheel CLI (`npx flywheel` in a Flywheel checkout) and NATS_URL pointing at the mesh.',
      'set -euo pipefail',
      'OUT="$(cd "${1:?usage: publish.sh OUTPUT_DIR}" && pwd)"',
      `export NATS_URL="\${NATS_URL:-${o.publish.natsUrl}}"`,
      `\${FLYWHEEL:-npx flywheel} models publish --run ${sq(o.loopRunId)} --dir "$OUT" --version ${sq(o.publish.version)} --parent ${sq(o.base.version)}`,
      '',
    ].join('\n'),
  });

  const manifest: HandoffManifest = {
    loop_run_id: o.loopRunId,
    created_at: o.createdAt,
    wait_until: o.waitUntil,
    base_version: o.base.version,
    base_model: 'base-model',
    reward_version: o.reward?.version ?? null,
    reward_model: o.reward ? 'reward-model' : null,
    data,
    heldout_prompts: o.heldout.length,
    heldout_rows_dropped: preference.dropped + sft.dropped,
    commands,
    publish: { version: o.publish.version, command: publishCommand },
  };
  files.push({ name: 'handoff.json', content: `${JSON.stringify(manifest, null, 2)}\n` });
  files.push({ name: 'README.md', content: operatorReadme(manifest) });
  const models = [{ name: 'base-model', from: o.base.dir }, ...(o.reward ? [{ name: 'reward-model', from: o.reward.dir }] : [])];
  return { files, models, manifest };
}

function operatorReadme(m: HandoffManifest): string {
  const rows = Object.entries(m.data).map(([k, d]) => `| \`${d.file}\` | ${d.rows} | ${k}: ${d.format} |`);
  const cmds = Object.entries(m.commands).map(([k, c]) => `| \`bash ${c.script}\` | ${c.config ? `\`${c.config}\`` : '(flags in the script)'} | \`${c.output}\` | ${k.startsWith('trl') ? 'TRL' : 'OpenRLHF'} |`);
  return [
    `# Flywheel hand-off: loop run ${m.loop_run_id}`,
    '',
    `The Flywheel loop run \`${m.loop_run_id}\` handed its training stage to you. It waits until ${m.wait_until} for a`,
    'checkpoint published under its run id, then runs its eval gate on it (held-out prompts, reward model, KL and',
    `moderation bounds) and promotes it if it passes, exactly as it does with the policies it trains itself.`,
    '',
    '## What is here',
    '',
    '| file | rows | what |',
    '|---|---|---|',
    ...rows,
    `| \`base-model/\` | | the policy to start from: version \`${m.base_version}\` (Hugging Face folder) |`,
    ...(m.reward_model ? [`| \`reward-model/\` | | the run's reward model \`${m.reward_version ?? ''}\` (SequenceClassification, num_labels 1) |`] : []),
    '| `handoff.json` | | the same, for scripts |',
    '',
    `${m.heldout_prompts} prompts are held out for the eval gate; ${m.heldout_rows_dropped} lines on them were left out of the data, so`,
    'the gate judges the checkpoint on prompts it never trained on. Do not add them back.',
    '',
    '## Train (pick one)',
    '',
    'Copy the folder to the cluster (`rsync -a` keeps the model folders), then from the folder:',
    '',
    '| command | config | writes | trainer |',
    '|---|---|---|---|',
    ...cmds,
    '',
    'The numbers in the configs are starting points for a single node: change batch sizes, learning rate, epochs or',
    'the launcher (`accelerate launch`, `torchrun`, Slurm) as your cluster needs; extra arguments of a script are',
    'passed to the trainer. SFT first and DPO or GRPO from its output is fine: point `model_name_or_path`',
    '(`--model.model_name_or_path`) at the SFT output. A LoRA run must be merged into full weights before it comes back.',
    '',
    '## Bring the result back',
    '',
    'The output folder must be a Hugging Face checkpoint of the same architecture and tokenizer: `config.json`,',
    '`model.safetensors` (or shards with their index), `tokenizer.json`, `tokenizer_config.json`. Then, with NATS_URL',
    'pointing at the Flywheel mesh:',
    '',
    '```bash',
    'bash publish.sh out/<trainer>        # or:',
    m.publish.command.replace('OUTPUT_DIR', 'out/<trainer>'),
    '```',
    '',
    `The loop picks up the first policy version published with run id \`${m.loop_run_id}\` within seconds, evaluates it`,
    'against the base version and promotes it when the gate passes (the refusal reasons are on the run otherwise).',
    '',
  ].join('\n');
}

/** Files of a model folder: hard links (no copy of the weights) where the file system allows, else copies. */
function placeModel(from: string, to: string): void {
  mkdirSync(to, { recursive: true });
  for (const name of readdirSync(from)) {
    const src = path.join(from, name);
    if (name.startsWith('.') || !statSync(src).isFile()) continue;
    const dst = path.join(to, name);
    if (existsSync(dst)) continue;
    try {
      linkSync(src, dst);
    } catch {
      copyFileSync(src, dst);
    }
  }
}

/** Writes `plan` into `dir` (each file whole: written aside, then renamed), the models last. */
export function writeHandoff(dir: string, plan: HandoffPlan): void {
  mkdirSync(dir, { recursive: true });
  for (const f of plan.files) {
    const target = path.join(dir, f.name);
    mkdirSync(path.dirname(target), { recursive: true });
    const tmp = `${target}.tmp-${process.pid}`;
    writeFileSync(tmp, f.content, { mode: f.executable ? 0o755 : 0o644 });
    renameSync(tmp, target);
  }
  for (const m of plan.models) placeModel(m.from, path.join(dir, m.name));
}

/** The manifest of a hand-off already written (a loop job run again keeps its first deadline), or null. */
export function readHandoffManifest(dir: string): HandoffManifest | null {
  try {
    return handoffManifestSchema.parse(JSON.parse(readFileSync(path.join(dir, 'handoff.json'), 'utf8')));
  } catch {
    return null;
  }
}
