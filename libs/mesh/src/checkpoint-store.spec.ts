import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { packCheckpoint, unpackCheckpoint } from './checkpoint-store';

const MODEL = path.resolve(__dirname, '..', '..', '..', 'models', 'stories260K');

describe('checkpoint packing', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'flywheel-pack-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('round-trips every top-level file byte for byte, sorted, reproducibly', () => {
    const { data, files } = packCheckpoint(MODEL);
    expect(files.map((f) => f.name)).toEqual([...files.map((f) => f.name)].sort());
    expect(files.map((f) => f.name)).toContain('model.safetensors');
    expect(packCheckpoint(MODEL).data.equals(data)).toBe(true);
    unpackCheckpoint(data, path.join(dir, 'out'));
    for (const f of files) expect(readFileSync(path.join(dir, 'out', f.name)).equals(readFileSync(path.join(MODEL, f.name)))).toBe(true);
  });

  it('leaves out training state, hidden files and folders; refuses a folder without config.json', () => {
    const src = path.join(dir, 'ckpt');
    mkdirSync(path.join(src, 'sub'), { recursive: true });
    writeFileSync(path.join(src, 'config.json'), '{}');
    writeFileSync(path.join(src, 'optimizer.safetensors'), 'x');
    writeFileSync(path.join(src, 'training_state.json'), '{}');
    writeFileSync(path.join(src, '.hidden'), 'x');
    expect(packCheckpoint(src).files.map((f) => f.name)).toEqual(['config.json']);
    expect(() => packCheckpoint(path.join(src, 'sub'))).toThrow(/no config.json/);
  });

  it('rejects truncated packs, foreign bytes and file names that leave the folder', () => {
    const { data } = packCheckpoint(MODEL);
    expect(() => unpackCheckpoint(data.subarray(0, data.length - 1), path.join(dir, 'a'))).toThrow(/header lists/);
    expect(() => unpackCheckpoint(Buffer.from('hello'), path.join(dir, 'b'))).toThrow(/not a packed/);
    const evil = Buffer.concat([Buffer.from(`FLYWHEEL-CKPT-1\n${JSON.stringify({ files: [{ name: '../x', bytes: 1 }] })}\n`), Buffer.from('x')]);
    expect(() => unpackCheckpoint(evil, path.join(dir, 'c'))).toThrow(/bad file name/);
  });
});
