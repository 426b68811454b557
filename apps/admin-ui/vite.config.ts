/**
 * Vite build of the admin review UI: static files in apps/admin-ui/dist, served by the gateway under
 * /admin (hence `base`). Not a dev server setup: the API lives in the gateway, so build and reload.
 * JSX is compiled by Vite's own Oxc transform; @vitejs/plugin-react is not needed for a build.
 */
import path from 'node:path';
import { defineConfig } from 'vite';

const here = path.dirname(new URL(import.meta.url).pathname);

export default defineConfig({
  root: here,
  base: '/admin/',
  oxc: { jsx: { runtime: 'automatic' } },
  build: {
    outDir: path.join(here, 'dist'),
    emptyOutDir: true,
    chunkSizeWarningLimit: 900,
  },
  logLevel: 'warn',
});
