/**
 * Chats as a template renders them when they carry tools, tool calls and tool results (shared by serving and
 * training so both see the same prompt), and the detection of a template's tool-call and reasoning formats.
 */
export * from './tool-prompt';
