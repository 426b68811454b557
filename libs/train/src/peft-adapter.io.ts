/**
 * LoRA adapters on disk in PEFT's format: `adapter_model.safetensors` (tensors `base_model.model.model.layers.{l}.
 * {self_attn|mlp}.{target}.lora_{A|B}.weight`, F32) and `adapter_config.json` (peft_type LORA, r, lora_alpha,
 * target_modules, base_model_name_or_path), which `PeftModel.from_pretrained(base, dir)` loads. A sequence classifier
 * (a reward model) trains its new `score` head in full, so its adapter also holds `base_model.model.score.weight` and
 * says `modules_to_save: ["score"]`, as PEFT saves one: without it PEFT would run the base's untrained head.
 * Writer and reader; not the merged checkpoint (resume-point.ts) nor the adapters' math (@flywheel/kernels).
 */
import { mkdir, readFile } from 'node:fs/promises';
import * as path from 'node:path';
import { z } from 'zod';
import { LORA_TARGETS, loraAdapterShapes, SCORE_HEAD_WEIGHT, type LoraTarget, type ModelSpec, type WeightMap } from '@flywheel/kernels';
import { ModelLoadError, readSafetensorsFile, writeFileAtomic, writeSafetensorsFile } from '@flywheel/model';

export const PEFT_ADAPTER_WEIGHTS_FILE = 'adapter_model.safetensors';
export const PEFT_ADAPTER_CONFIG_FILE = 'adapter_config.json';
/**
 * Where a training checkpoint keeps its adapter: a subfolder, not beside model.safetensors, because transformers
 * (with peft installed) treats a folder holding adapter_config.json as an adapter and loads the base model from
 * base_model_name_or_path instead of the merged weights there.
 */
export const CHECKPOINT_ADAPTER_DIR = 'adapter';
/** The scalar head's name in a PEFT adapter file (a module saved whole); SCORE_HEAD_WEIGHT in our weight maps. */
const PEFT_SCORE_HEAD = 'base_model.model.score.weight';

export interface PeftLoraConfig {
  rank: number;
  alpha: number;
  targets: LoraTarget[];
  /** base_model_name_or_path: the checkpoint the adapters apply to. */
  baseModel: string;
  /** PEFT task type: CAUSAL_LM for a policy, SEQ_CLS for a scalar-head model. */
  taskType: 'CAUSAL_LM' | 'SEQ_CLS';
}

const adapterConfigSchema = z.looseObject({
  peft_type: z.literal('LORA'),
  task_type: z.enum(['CAUSAL_LM', 'SEQ_CLS']).nullish(),
  base_model_name_or_path: z.string().nullish(),
  r: z.int().positive(),
  lora_alpha: z.number().positive(),
  // PEFT also accepts a regex string here; adapters we can apply name their projections.
  target_modules: z.array(z.enum(LORA_TARGETS)).min(1),
  use_rslora: z.boolean().optional(),
  use_dora: z.boolean().optional(),
});

/**
 * Writes the adapters (exactly those of `config` for `spec`) and their config into dir, creating it; for SEQ_CLS also
 * the trained head, `score.weight` of `weights`.
 */
export async function writePeftAdapter(dir: string, a: { spec: ModelSpec; weights: WeightMap; config: PeftLoraConfig }): Promise<void> {
  const { config } = a;
  const tensors = [];
  for (const [name, [rows, cols]] of loraAdapterShapes(a.spec, config)) {
    const data = a.weights.get(name);
    if (data === undefined) throw new ModelLoadError(`cannot write the adapter: missing tensor ${name}`, dir);
    tensors.push({ name, shape: [rows, cols], data });
  }
  if (config.taskType === 'SEQ_CLS') {
    const head = a.weights.get(SCORE_HEAD_WEIGHT);
    if (head === undefined || head.length % a.spec.hiddenSize !== 0) throw new ModelLoadError(`cannot write the adapter: a SEQ_CLS adapter needs its ${SCORE_HEAD_WEIGHT} (labels, ${a.spec.hiddenSize})`, dir);
    tensors.push({ name: PEFT_SCORE_HEAD, shape: [head.length / a.spec.hiddenSize, a.spec.hiddenSize], data: head });
  }
  await mkdir(dir, { recursive: true });
  await writeSafetensorsFile(path.join(dir, PEFT_ADAPTER_WEIGHTS_FILE), tensors);
  const json = {
    peft_type: 'LORA',
    task_type: config.taskType,
    base_model_name_or_path: config.baseModel,
    r: config.rank,
    lora_alpha: config.alpha,
    target_modules: config.targets,
    lora_dropout: 0.0,
    bias: 'none',
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    modules_to_save: config.taskType === 'SEQ_CLS' ? ['score'] : null,
    use_rslora: false,
    use_dora: false,
  };
  await writeFileAtomic(path.join(dir, PEFT_ADAPTER_CONFIG_FILE), JSON.stringify(json, null, 2) + '\n');
}

/**
 * Reads what writePeftAdapter wrote (or a PEFT LoRA adapter of the same kind); a saved score head comes back as
 * `score.weight`. ModelLoadError when malformed.
 */
export async function readPeftAdapter(dir: string): Promise<{ config: PeftLoraConfig; weights: Map<string, Float32Array> }> {
  const file = path.join(dir, PEFT_ADAPTER_CONFIG_FILE);
  let parsed: z.infer<typeof adapterConfigSchema>;
  try {
    const r = adapterConfigSchema.safeParse(JSON.parse(await readFile(file, 'utf8')));
    if (!r.success) throw new Error(`${r.error.issues[0].path.join('.')}: ${r.error.issues[0].message}`);
    parsed = r.data;
  } catch (err) {
    throw new ModelLoadError(`unreadable LoRA adapter config (${err instanceof Error ? err.message : String(err)})`, file);
  }
  if (parsed.use_rslora || parsed.use_dora) throw new ModelLoadError('rsLoRA / DoRA adapters are not supported', file);
  const weights = new Map<string, Float32Array>();
  for (const [name, t] of await readSafetensorsFile(path.join(dir, PEFT_ADAPTER_WEIGHTS_FILE))) weights.set(name === PEFT_SCORE_HEAD ? SCORE_HEAD_WEIGHT : name, t.data);
  return {
    config: {
      rank: parsed.r,
      alpha: parsed.lora_alpha,
      targets: LORA_TARGETS.filter((t) => parsed.target_modules.includes(t)),
      baseModel: parsed.base_model_name_or_path ?? '',
      taskType: parsed.task_type ?? 'CAUSAL_LM',
    },
    weights,
  };
}
