/**
 * OpenAI's Responses API as wire shapes: the POST /v1/responses body (text and function tools, instructions, input
 * as text or items, text formats, previous_response_id), the response object and its streaming events. The
 * gateway runs it on the chat-completions path; nothing here does I/O.
 */
import { z } from 'zod';

const textPartSchema = z.object({
  type: z.enum(['input_text', 'output_text'], { error: "only content parts of type 'input_text' or 'output_text' are supported" }),
  text: z.string(),
  annotations: z.array(z.unknown()).nullish(),
});

export const responseInputMessageSchema = z.object({
  type: z.literal('message').optional(),
  id: z.string().nullish(),
  status: z.string().nullish(),
  role: z.enum(['user', 'assistant', 'system', 'developer']),
  content: z.union([z.string(), z.array(textPartSchema)]),
});
export const responseFunctionCallItemSchema = z.object({
  type: z.literal('function_call'),
  id: z.string().nullish(),
  status: z.string().nullish(),
  call_id: z.string().min(1),
  name: z.string().min(1),
  arguments: z.string(),
});
export const responseFunctionCallOutputItemSchema = z.object({
  type: z.literal('function_call_output'),
  id: z.string().nullish(),
  status: z.string().nullish(),
  call_id: z.string().min(1),
  output: z.string(),
});
export const responseInputItemSchema = z.union([responseInputMessageSchema, responseFunctionCallItemSchema, responseFunctionCallOutputItemSchema]);
export type ResponseInputItem = z.infer<typeof responseInputItemSchema>;

export const responseFunctionToolSchema = z.object({
  type: z.literal('function', { error: "only tools of type 'function' are supported" }),
  name: z.string(),
  description: z.string().nullish(),
  parameters: z.record(z.string(), z.unknown()).nullish(),
  strict: z.boolean().nullish(),
});
export type ResponseFunctionTool = z.infer<typeof responseFunctionToolSchema>;

export const responseTextFormatSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('text') }),
  z.object({ type: z.literal('json_object') }),
  z.object({
    type: z.literal('json_schema'),
    name: z.string(),
    description: z.string().nullish(),
    schema: z.record(z.string(), z.unknown()),
    strict: z.boolean().nullish(),
  }),
]);
export type ResponseTextFormat = z.infer<typeof responseTextFormatSchema>;

export const responseCreateRequestSchema = z.strictObject({
  model: z.string().min(1),
  input: z.union([z.string(), z.array(responseInputItemSchema).min(1)]),
  instructions: z.string().nullish(),
  tools: z.array(responseFunctionToolSchema).max(128).nullish(),
  tool_choice: z
    .union([z.enum(['none', 'auto', 'required']), z.object({ type: z.literal('function'), name: z.string() })])
    .nullish(),
  parallel_tool_calls: z.boolean().nullish(),
  text: z.object({ format: responseTextFormatSchema.nullish(), verbosity: z.string().nullish() }).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().min(0).max(1).nullish(),
  max_output_tokens: z.number().int().positive().nullish(),
  stream: z.boolean().nullish(),
  /** Every response is recorded (the flywheel keeps all traffic); accepted for compatibility. */
  store: z.boolean().nullish(),
  previous_response_id: z.string().nullish(),
  metadata: z.record(z.string(), z.string()).nullish(),
  user: z.string().max(256).nullish(),
  truncation: z.enum(['disabled']).nullish(),
  service_tier: z.string().nullish(),
});
export type ResponseCreateRequest = z.infer<typeof responseCreateRequestSchema>;

export interface ResponseOutputText {
  type: 'output_text';
  text: string;
  annotations: never[];
}
export interface ResponseOutputMessage {
  type: 'message';
  id: string;
  status: 'completed' | 'incomplete';
  role: 'assistant';
  content: ResponseOutputText[];
}
export interface ResponseFunctionCall {
  type: 'function_call';
  id: string;
  call_id: string;
  name: string;
  arguments: string;
  status: 'completed' | 'incomplete';
}
export type ResponseOutputItem = ResponseOutputMessage | ResponseFunctionCall;

export interface ResponseObject {
  id: string;
  object: 'response';
  created_at: number;
  status: 'completed' | 'incomplete' | 'in_progress';
  error: null;
  incomplete_details: { reason: 'max_output_tokens' | 'content_filter' } | null;
  instructions: string | null;
  max_output_tokens: number | null;
  model: string;
  output: ResponseOutputItem[];
  parallel_tool_calls: boolean;
  previous_response_id: string | null;
  temperature: number;
  top_p: number;
  tool_choice: ResponseCreateRequest['tool_choice'];
  tools: ResponseFunctionTool[];
  text: { format: ResponseTextFormat };
  truncation: 'disabled';
  store: boolean;
  metadata: Record<string, string>;
  user: string | null;
  usage: {
    input_tokens: number;
    input_tokens_details: { cached_tokens: number };
    output_tokens: number;
    output_tokens_details: { reasoning_tokens: number };
    total_tokens: number;
  } | null;
}
