// Vite build of the webmail SPA into dist/webmail, which the API process serves at `/`
// (src/api/webmail-static.ts). Hashed file names under /assets let the server cache them for a
// year; everything is bundled: the page loads nothing from any other origin.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

const here = path.dirname(fileURLToPath(import.meta.url));

export default defineConfig({
  root: here,
  base: '/',
  plugins: [react()],
  build: {
    outDir: path.resolve(here, '../dist/webmail'),
    emptyOutDir: true,
    assetsDir: 'assets',
    sourcemap: false,
    target: 'es2022',
    reportCompressedSize: false,
  },
  server: {
    // `npx vite --config webmail/vite.config.mjs` for UI work against a server on API_PORT
    proxy: { '/api': 'http://127.0.0.1:3000' },
  },
});
