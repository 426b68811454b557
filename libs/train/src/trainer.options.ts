/**
 * The options every trainer on JSONL data takes (SFT, reward model, DPO in @flywheel/rl), and those of the trainers
 * that resume (SFT, DPO). Each trainer's options extend these with its own; types only.
 */
import type { StepCheckpointHooks } from './resume-point';

export interface TrainRunOptions {
  /** The checkpoint training starts from (a Hugging Face directory). */
  modelDir: string;
  /** The JSONL text and a name for it in errors (a path, or `export <id>`). */
  data: { text: string; source: string };
  outDir: string;
  /** Optimizer steps. */
  steps: number;
  /** Peak learning rate (warmup + cosine). */
  lr: number;
  /** Examples (conversations, or preference pairs) per optimizer step. */
  batchSize: number;
  /** Longest sequence in tokens (default 256, capped at the model's max positions). */
  seqLen?: number;
  /** Fraction of the examples held out (at least one when > 0 and there are two or more). */
  heldout: number;
  seed: number;
  /** Native worker threads (default: hardware cores). */
  threads?: number;
}

export interface ResumableRunOptions extends TrainRunOptions, StepCheckpointHooks {
  /** The JSONL text, a name for it in errors (a path, or `export <id>`) and for the training state (default: source). */
  data: { text: string; source: string; origin?: string };
  /** Write checkpoint + training state every N steps (0: only at the end). */
  checkpointEvery?: number;
  /** Continue from outDir's training state when it holds one for these options. */
  resume?: boolean;
  /** When resume finds a matching training state: the optimizer steps it holds. */
  onResume?: (step: number) => void | Promise<void>;
}
