/**
 * The admin UI's built files (Vite output) as HTTP answers: a request path under /admin maps to a file
 * in the UI folder, never outside it; paths without a file extension get index.html (client-side routes);
 * hashed assets are cached for a year, index.html never. A missing build is a 503 saying how to build it.
 */
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';

export interface StaticAnswer {
  status: number;
  headers: Record<string, string>;
  body: Buffer | string;
}

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.gif': 'image/gif',
  '.webp': 'image/webp',
  '.ico': 'image/x-icon',
  '.woff': 'font/woff',
  '.woff2': 'font/woff2',
  '.ttf': 'font/ttf',
  '.txt': 'text/plain; charset=utf-8',
  '.webmanifest': 'application/manifest+json',
};

const SECURITY_HEADERS = { 'x-content-type-options': 'nosniff', 'x-frame-options': 'DENY', 'referrer-policy': 'same-origin' };

export const UI_NOT_BUILT = 'admin UI not built: run npm run build:admin-ui\n';

/**
 * The file a path below /admin names, inside `root`, or null when the path escapes it or is not a plain
 * relative path (NUL, backslash, encoded separators are refused before joining).
 */
export function uiFileOf(root: string, requestPath: string): string | null {
  let decoded: string;
  try {
    decoded = decodeURIComponent(requestPath);
  } catch {
    return null;
  }
  if (decoded.includes('\0') || decoded.includes('\\')) return null;
  const parts = decoded.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.some((p) => p === '..')) return null;
  const rel = parts.length === 0 ? 'index.html' : parts.join('/');
  const base = path.resolve(root);
  const file = path.resolve(base, rel);
  return file === base || file.startsWith(base + path.sep) ? file : null;
}

async function isFile(file: string): Promise<boolean> {
  try {
    return (await stat(file)).isFile();
  } catch {
    return false;
  }
}

/** What GET /admin/<requestPath> answers. */
export async function serveUi(root: string, requestPath: string): Promise<StaticAnswer> {
  const index = path.join(path.resolve(root), 'index.html');
  if (!(await isFile(index))) {
    return { status: 503, headers: { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' }, body: UI_NOT_BUILT };
  }
  const file = uiFileOf(root, requestPath);
  if (file === null) return { status: 404, headers: { 'content-type': 'text/plain; charset=utf-8' }, body: 'not found\n' };
  if (await isFile(file)) {
    const ext = path.extname(file).toLowerCase();
    const isIndex = file === index;
    return {
      status: 200,
      headers: {
        'content-type': CONTENT_TYPES[ext] ?? 'application/octet-stream',
        'cache-control': isIndex ? 'no-cache' : /[.-][A-Za-z0-9_-]{8,}\.\w+$/.test(file) ? 'public, max-age=31536000, immutable' : 'no-cache',
        ...SECURITY_HEADERS,
      },
      body: await readFile(file),
    };
  }
  // A client-side route (no extension) gets the app; a missing asset is a 404.
  if (path.extname(file) === '') {
    return { status: 200, headers: { 'content-type': CONTENT_TYPES['.html'] ?? 'text/html', 'cache-control': 'no-cache', ...SECURITY_HEADERS }, body: await readFile(index) };
  }
  return { status: 404, headers: { 'content-type': 'text/plain; charset=utf-8' }, body: 'not found\n' };
}
