/** The admin UI's static files: 503 before the build, content types and caching, SPA fallback, no path out of the folder. */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { serveUi, uiFileOf, UI_NOT_BUILT } from './admin-ui.files';

describe('admin UI static files', () => {
  let root: string;
  let ui: string;

  beforeAll(() => {
    root = mkdtempSync(path.join(tmpdir(), 'flywheel-admin-ui-'));
    ui = path.join(root, 'dist');
  });

  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it('maps paths inside the folder and refuses every way out of it', () => {
    expect(uiFileOf('/srv/ui', '')).toBe(path.resolve('/srv/ui/index.html'));
    expect(uiFileOf('/srv/ui', 'assets/app.js')).toBe(path.resolve('/srv/ui/assets/app.js'));
    expect(uiFileOf('/srv/ui', './assets//app.js')).toBe(path.resolve('/srv/ui/assets/app.js'));
    for (const escape of ['..', '../etc/passwd', 'assets/../../x', '..%2fx', '%2e%2e/x', 'a\\..\\..\\x', 'a%5c..%5cx', 'x%00.js', '%E0%A4%A']) {
      expect([escape, uiFileOf('/srv/ui', escape)]).toEqual([escape, null]);
    }
  });

  it('answers 503 until the UI is built, then files, the app for client routes and 404 for missing assets', async () => {
    expect(await serveUi(ui, '')).toMatchObject({ status: 503, body: UI_NOT_BUILT });
    mkdirSync(path.join(ui, 'assets'), { recursive: true });
    writeFileSync(path.join(ui, 'index.html'), '<html>');
    writeFileSync(path.join(ui, 'assets', 'index-abcdef12.css'), 'body{}');
    writeFileSync(path.join(root, 'secret.txt'), 'secret');

    const index = await serveUi(ui, '');
    expect([index.status, index.headers['content-type'], index.headers['cache-control'], String(index.body)]).toEqual([200, 'text/html; charset=utf-8', 'no-cache', '<html>']);
    const css = await serveUi(ui, 'assets/index-abcdef12.css');
    expect([css.status, css.headers['content-type'], css.headers['cache-control']]).toEqual([200, 'text/css; charset=utf-8', 'public, max-age=31536000, immutable']);
    expect(String((await serveUi(ui, 'completions/chatcmpl-1')).body)).toBe('<html>');
    expect((await serveUi(ui, 'assets/gone.js')).status).toBe(404);
    expect((await serveUi(ui, '..%2fsecret.txt')).status).toBe(404);
    expect((await serveUi(ui, 'assets')).status).toBe(200);
  });
});
