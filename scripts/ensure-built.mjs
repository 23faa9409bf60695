#!/usr/bin/env node
// Builds dist/ (tsc for the server, vite for the webmail SPA in dist/webmail) when it is missing
// or older than any source file, so `npm start` works right after `npm install` and after a
// `git pull`. Quiet unless it builds or fails.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const stamp = path.join(root, 'dist', '.build-stamp');

function newest(dir) {
  let latest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) latest = Math.max(latest, newest(full));
    else if (/\.(ts|tsx|css|html|mjs)$/.test(entry.name)) latest = Math.max(latest, statSync(full).mtimeMs);
  }
  return latest;
}

const sources = Math.max(newest(path.join(root, 'src')), newest(path.join(root, 'webmail')), statSync(path.join(root, 'package.json')).mtimeMs);
const webmailBuilt = existsSync(path.join(root, 'dist', 'webmail', 'index.html'));
if (!existsSync(stamp) || statSync(stamp).mtimeMs < sources || !webmailBuilt) {
  process.stderr.write('building (tsc)...\n');
  execFileSync(process.execPath, [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', path.join(root, 'tsconfig.build.json')], {
    stdio: 'inherit',
    cwd: root,
  });
  process.stderr.write('building the webmail (vite)...\n');
  execFileSync(process.execPath, [path.join(root, 'node_modules', 'vite', 'bin', 'vite.js'), 'build', '--config', path.join(root, 'webmail', 'vite.config.mjs'), '--logLevel', 'warn'], {
    stdio: 'inherit',
    cwd: root,
  });
  writeFileSync(stamp, new Date().toISOString());
}
