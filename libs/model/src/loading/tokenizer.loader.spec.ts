/**
 * Specs of the tokenizer loader on models/stories260K: encode/decode, chat template rendering and tokenization, and
 * clear errors for missing templates and broken files (copies in os.tmpdir()).
 */
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { ModelLoadError } from './model-load.error';
import { committedModelDir } from './model-files.testing';
import { loadTokenizer } from './tokenizer.loader';

describe('tokenizer loader', () => {
  const dir = committedModelDir;

  it('encodes "Once upon a time" with and without BOS', async () => {
    const tokenizer = await loadTokenizer(dir());
    expect(tokenizer.encode('Once upon a time')).toEqual([1, 403, 407, 261, 378]);
    expect(tokenizer.encode('Once upon a time', { addSpecialTokens: false })).toEqual([403, 407, 261, 378]);
    expect(tokenizer.bosTokenId).toBe(1);
    expect(tokenizer.eosTokenId).toBe(2);
    expect(tokenizer.vocabSize).toBe(512);
  });

  it('decodes back to the text, with or without the special tokens', async () => {
    const tokenizer = await loadTokenizer(dir());
    for (const text of ['Once upon a time', 'Lily said, "Hi!"\nTim  ran.', 'café 日本語 🙂']) {
      expect(tokenizer.decode(tokenizer.encode(text), { skipSpecialTokens: true })).toBe(text);
      expect(tokenizer.decode(tokenizer.encode(text, { addSpecialTokens: false }))).toBe(text);
    }
    expect(tokenizer.decode([1, 403, 407, 261, 378])).toBe('<s> Once upon a time');
  });

  it('renders the chat template and tokenizes it without a second BOS', async () => {
    const tokenizer = await loadTokenizer(dir());
    const messages = [{ role: 'user', content: 'Tell me a story.' }];
    expect(tokenizer.renderChat(messages, { addGenerationPrompt: true })).toBe('<s><|user|>\nTell me a story.\n<|assistant|>\n');
    expect(tokenizer.renderChat(messages)).toBe('<s><|user|>\nTell me a story.\n');
    const ids = tokenizer.applyChatTemplate(messages, { addGenerationPrompt: true });
    expect(ids[0]).toBe(1);
    expect(ids.filter((id) => id === 1)).toHaveLength(1);
    // As with HF's Llama tokenizers, text after a special token gets its own "▁" (id 410) from the Prepend normalizer.
    expect(ids.slice(0, 4)).toEqual([1, 410, 504, 506]);
    expect(ids).toHaveLength(33);
    expect(tokenizer.decode(ids, { skipSpecialTokens: true })).toBe('<|user|>\nTell me a story.\n<|assistant|>\n');
  });

  describe('with tokenizer files in a temporary folder', () => {
    let tmp: string;
    beforeEach(() => {
      tmp = mkdtempSync(path.join(tmpdir(), 'flywheel-tokenizer-'));
      copyFileSync(path.join(dir(), 'tokenizer.json'), path.join(tmp, 'tokenizer.json'));
    });
    afterEach(() => rmSync(tmp, { recursive: true, force: true }));
    const writeConfig = (patch: Record<string, unknown>) => {
      const config = JSON.parse(readFileSync(path.join(dir(), 'tokenizer_config.json'), 'utf8'));
      writeFileSync(path.join(tmp, 'tokenizer_config.json'), JSON.stringify({ ...config, ...patch }));
    };

    it('says clearly when the model has no chat template', async () => {
      writeConfig({ chat_template: undefined });
      const tokenizer = await loadTokenizer(tmp);
      expect(tokenizer.chatTemplate).toBeNull();
      expect(() => tokenizer.applyChatTemplate([{ role: 'user', content: 'hi' }])).toThrow(ModelLoadError);
      expect(() => tokenizer.renderChat([{ role: 'user', content: 'hi' }])).toThrow(/this model has no chat template/);
    });

    it('prefers chat_template.jinja and passes eos_token to templates', async () => {
      writeConfig({});
      writeFileSync(path.join(tmp, 'chat_template.jinja'), '{% for m in messages %}[{{ m.role }}]{{ m.content }}{{ eos_token }}{% endfor %}');
      const tokenizer = await loadTokenizer(tmp);
      expect(tokenizer.renderChat([{ role: 'user', content: 'hi' }])).toBe('[user]hi</s>');
    });

    it('rejects a template that does not parse at load time', async () => {
      writeConfig({ chat_template: '{% for m in messages %}' });
      await expect(loadTokenizer(tmp)).rejects.toThrow(/chat template does not parse/);
    });

    it('reuses the tokenizer built from equal files (a hot swap within one base), and builds anew when any differs', async () => {
      writeConfig({});
      const first = await loadTokenizer(tmp);
      const copyTo = (patch: (name: string, text: string) => string = (_, t) => t) => {
        const other = mkdtempSync(path.join(tmpdir(), 'flywheel-tokenizer-'));
        for (const name of ['tokenizer.json', 'tokenizer_config.json']) writeFileSync(path.join(other, name), patch(name, readFileSync(path.join(tmp, name), 'utf8')));
        return other;
      };
      const same = copyTo();
      const widened = copyTo((name, text) => (name === 'tokenizer.json' ? text.replace(/"vocab": *\{/, '"vocab": {"▁w512": 512,') : text));
      const otherEos = copyTo((name, text) => (name === 'tokenizer_config.json' ? JSON.stringify({ ...JSON.parse(text), eos_token: '<unk>' }) : text));
      try {
        const again = await loadTokenizer(same);
        // The built tokenizer is shared (its compiled chat template with it); only where it came from differs.
        expect(again.chatTemplate).toBe(first.chatTemplate);
        expect(again.dir).toBe(same);
        expect(first.dir).toBe(tmp);
        expect(again.encode('Once upon a time')).toEqual(first.encode('Once upon a time'));
        expect(again.vocabSize).toBe(512);
        // The grammar compiler's vocabulary too: worked out once per build, not once per version.
        expect(again.grammarVocab()).toBe(first.grammarVocab());
        expect(first.grammarVocab().tokens).toHaveLength(512);

        const grown = await loadTokenizer(widened);
        expect(grown.chatTemplate).not.toBe(first.chatTemplate);
        expect(grown.vocabSize).toBe(513);
        expect(grown.grammarVocab()).not.toBe(first.grammarVocab());
        const eos = await loadTokenizer(otherEos);
        expect(eos.chatTemplate).not.toBe(first.chatTemplate);
        expect(eos.eosTokenId).toBe(0);
      } finally {
        for (const d of [same, widened, otherEos]) rmSync(d, { recursive: true, force: true });
      }
    });

    it('names the missing or broken tokenizer file', async () => {
      writeFileSync(path.join(tmp, 'tokenizer.json'), '{"model": ');
      await expect(loadTokenizer(tmp)).rejects.toThrow(`${path.join(tmp, 'tokenizer.json')}: not valid JSON`);
      rmSync(path.join(tmp, 'tokenizer.json'));
      await expect(loadTokenizer(tmp)).rejects.toThrow(/tokenizer\.json: cannot read \(ENOENT\)/);
    });
  });
});
