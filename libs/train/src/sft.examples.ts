/**
 * SFT data: a conversation tokenized with the checkpoint's chat template and a loss mask on its assistant tokens,
 * chat JSONL (`{"messages": [...]}`, the SFT export format) parsed into such examples, and right-padded batches of
 * them. Also DPO's sides (@flywheel/rl). No model, optimizer or file I/O here.
 */
import { sftExportLineSchema, type ChatTool, type ExportTool } from '@flywheel/contracts';
import { detectToolCallFormat, templateChat, templateHandlesTools, type Checkpoint } from '@flywheel/model';
import { parseJsonlLines } from './jsonl.lines';

/** One tokenized conversation: ids and, per position t, whether ids[t] is an assistant token (a loss target). */
export interface SftExample {
  ids: number[];
  assistant: boolean[];
}

/**
 * Tokenizes one conversation with the checkpoint's chat template. An assistant turn's tokens are those the
 * rendering of messages[0..i] adds after the generation prompt of messages[0..i-1]; an EOS is appended to each
 * assistant turn the template does not end with one, so the tuned model learns to stop.
 */
export function buildSftExample(ck: Checkpoint, plain: readonly { role: string; content: string }[], tools: readonly ExportTool[] = []): SftExample {
  const tok = ck.tokenizer;
  // Tools go into the prompt exactly as the policy renders them when serving (libs/model/src/chat/tool-prompt.ts).
  const source = ck.chatTemplate?.source ?? null;
  const chat = templateChat(
    plain.map((m) => ({ role: m.role as 'system' | 'user' | 'assistant', content: m.content })),
    tools.map(asChatTool),
    { format: detectToolCallFormat(source, 'auto'), templateHandlesTools: templateHandlesTools(source) },
  );
  const messages = chat.messages;
  const render = (upTo: number, addGenerationPrompt: boolean) => tok.applyChatTemplate(messages.slice(0, upTo), { addGenerationPrompt, variables: chat.variables });
  const eos = ck.generation.eosTokenIds[0] ?? null;
  const ids: number[] = [];
  const assistant: boolean[] = [];
  let cursor = 0; // tokens of the template rendering already emitted (EOS we add is not part of it)
  for (let i = 0; i < messages.length; i++) {
    if (messages[i].role !== 'assistant') continue;
    const prefix = render(i, true);
    const through = render(i + 1, false);
    for (const id of prefix.slice(cursor)) {
      ids.push(id);
      assistant.push(false);
    }
    const reply = through.slice(prefix.length);
    for (const id of reply) {
      ids.push(id);
      assistant.push(true);
    }
    if (eos !== null && reply[reply.length - 1] !== eos) {
      ids.push(eos);
      assistant.push(true);
    }
    cursor = through.length;
  }
  return { ids, assistant };
}

function asChatTool(tool: ExportTool): ChatTool {
  return 'function' in tool ? tool : { type: 'function', function: tool };
}

/** Parses chat JSONL (`source` names it in errors) into tokenized examples with an assistant target below seqLen. */
export function parseSftJsonl(ck: Checkpoint, text: string, source: string, seqLen: number): SftExample[] {
  const examples: SftExample[] = [];
  parseJsonlLines(text, source, sftExportLineSchema, 'an SFT line ({"messages": [{role, content}, ...]})', (line) => {
    const ex = buildSftExample(ck, line.messages, line.tools ?? []);
    if (ex.assistant.some((x, t) => x && t > 0 && t < seqLen)) examples.push(ex);
  });
  if (examples.length === 0) throw new Error(`${source}: no conversation with an assistant turn`);
  return examples;
}

export interface PackedBatch {
  B: number;
  T: number;
  tokens: Int32Array;
  mask: Int32Array;
  targets: Int32Array;
  weights: Float32Array;
  realTokens: number;
}

/** Right-padded batch; position t predicts ids[t+1], weighted 1 when that token is an assistant token. */
export function packBatch(examples: SftExample[], seqLen: number): PackedBatch {
  const T = Math.max(2, Math.min(seqLen, Math.max(...examples.map((e) => e.ids.length)))) - 1;
  const B = examples.length;
  const tokens = new Int32Array(B * T);
  const mask = new Int32Array(B * T);
  const targets = new Int32Array(B * T);
  const weights = new Float32Array(B * T);
  let realTokens = 0;
  examples.forEach((e, b) => {
    const n = Math.min(e.ids.length, T + 1);
    for (let t = 0; t < n - 1; t++) {
      tokens[b * T + t] = e.ids[t];
      mask[b * T + t] = 1;
      targets[b * T + t] = e.ids[t + 1];
      weights[b * T + t] = e.assistant[t + 1] ? 1 : 0;
      realTokens++;
    }
  });
  return { B, T, tokens, mask, targets, weights, realTokens };
}
