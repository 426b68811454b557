/**
 * Gemma's chat template (Gemma 2's tokenizer_config.json template, verbatim) renders through ChatTemplate
 * (@huggingface/jinja) as transformers renders it: <bos>, "model" for the assistant role, trimmed contents, the
 * generation prompt; and its raise_exception on a system message surfaces as an error with the template's own words.
 */
import { ChatTemplate } from './tokenizer.loader';

const GEMMA2_TEMPLATE =
  "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}" +
  "{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}" +
  "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}" +
  "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}" +
  "{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{'<start_of_turn>model\\n'}}{% endif %}";

const template = new ChatTemplate(GEMMA2_TEMPLATE, { bos_token: '<bos>', eos_token: '<eos>', unk_token: '<unk>', pad_token: '<pad>' });

describe('Gemma chat template', () => {
  it('renders turns as transformers does', () => {
    const chat = [
      { role: 'user', content: ' Hi there ' },
      { role: 'assistant', content: 'Hello!' },
      { role: 'user', content: 'How are you?' },
    ];
    expect(template.render(chat, { addGenerationPrompt: true })).toBe(
      '<bos><start_of_turn>user\nHi there<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n' +
        '<start_of_turn>user\nHow are you?<end_of_turn>\n<start_of_turn>model\n',
    );
    expect(template.render(chat.slice(0, 2))).toBe('<bos><start_of_turn>user\nHi there<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n');
  });

  it("raises the template's own error for a system message and for roles out of turn", () => {
    expect(() => template.render([{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi' }])).toThrow('System role not supported');
    expect(() => template.render([{ role: 'user', content: 'a' }, { role: 'user', content: 'b' }])).toThrow(/Conversation roles must alternate/);
  });
});
