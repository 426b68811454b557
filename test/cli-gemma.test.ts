/**
 * A Gemma 3 model through the user's commands: a small Gemma 3 checkpoint (random weights, the stories260K tokenizer,
 * written by our own writers as a Hugging Face folder and as a GGUF with the tokenizer inside) is served by
 * `flywheel generate` from both, with the same greedy text, and trained by `flywheel train sft`, whose held-out loss
 * falls and whose checkpoint reloads as the same Gemma 3 model. The logits themselves are checked against float64
 * torch and llama.cpp in libs/model (model.golden.spec.ts, model.llamacpp.spec.ts); this is the plumbing.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { expectedWeightShapes } from '@flywheel/kernels';
import { loadCheckpoint, modelSpecFromConfig, readGguf, writeGguf, writeHfCheckpoint } from '@flywheel/model';
import { randomWeights } from '../libs/kernels/src/kernels.reference';
import { run } from './support/processes';

jest.setTimeout(180_000);

const dir = mkdtempSync(path.join(tmpdir(), 'flywheel-cli-gemma-'));
const hfDir = path.join(dir, 'gemma3-hf');
const ggufFile = path.join(dir, 'gemma3.gguf');

// Gemma 3 as Gemma3TextConfig describes it (6 layers: 5 sliding, 1 global with linear RoPE scaling), stories260K's
// 512-token vocabulary.
const spec = modelSpecFromConfig({
  architectures: ['Gemma3ForCausalLM'],
  model_type: 'gemma3_text',
  vocab_size: 512,
  hidden_size: 64,
  intermediate_size: 128,
  num_hidden_layers: 6,
  num_attention_heads: 4,
  num_key_value_heads: 1,
  head_dim: 16,
  query_pre_attn_scalar: 16,
  sliding_window: 8,
  max_position_embeddings: 256,
  rope_scaling: { rope_type: 'linear', factor: 8 },
  bos_token_id: 1,
  eos_token_id: 2,
});

beforeAll(async () => {
  const weights = randomWeights(spec, 5, expectedWeightShapes(spec));
  await writeHfCheckpoint(hfDir, { spec, weights, tokenizerDir: 'models/stories260K' });
  const { vocab } = await readGguf('test/fixtures/stories260K.gguf');
  await writeGguf(ggufFile, { spec, weights, vocab, name: 'gemma3-test' });
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

it('generates the same greedy text from the Hugging Face folder and from the GGUF with its own tokenizer', async () => {
  const gen = async (model: string) => {
    const r = run(process.execPath, ['tools/cli/flywheel.js', 'generate', '--model', model, '--prompt', 'Once upon a time', '--max-tokens', '24', '--threads', '1'], {});
    expect(await r.exited).toBe(0);
    return r.output();
  };
  const fromHf = await gen(hfDir);
  expect(fromHf.trim().length).toBeGreaterThan(0);
  expect(await gen(ggufFile)).toBe(fromHf);
  expect((await loadCheckpoint(ggufFile)).spec).toEqual(spec);
});

it('trains with `flywheel train sft` and writes a checkpoint that reloads as the same Gemma 3 model', async () => {
  const out = path.join(dir, 'sft-out');
  const r = run(process.execPath, ['tools/cli/flywheel.js', 'train', 'sft', '--model', hfDir, '--data', 'test/fixtures/sft/stories.jsonl', '--out', out, '--steps', '12', '--lr', '3e-3', '--seed', '1', '--json'], {});
  expect(await r.exited).toBe(0);
  const summary = JSON.parse(r.output().split('\n').find((l) => l.startsWith('{'))!);
  expect(summary.steps).toBe(12);
  expect(summary.heldout_loss_after).toBeLessThan(summary.heldout_loss_before);
  const trained = await loadCheckpoint(out);
  expect(trained.spec).toEqual(spec);
});
