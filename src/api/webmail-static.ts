/**
 * Serves the built webmail (dist/webmail, see webmail/vite.config.mjs) at `/`: hashed files
 * under /assets with a one-year immutable cache, index.html never cached, and index.html for
 * every other GET that asks for a page (the SPA's own router then shows the view), so a reload
 * or a shared link works. API paths are never answered here.
 *
 * The pages get a strict Content-Security-Policy: everything from this origin only, no inline
 * scripts, no objects, no framing by others. Images may come from anywhere because a message's
 * remote images are shown inside its sandboxed frame once the reader asks for them; until then
 * that frame's own policy (set by the webmail) blocks them.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { AppError } from '../core/errors.js';
import express, { type Express, type NextFunction, type Request, type Response } from 'express';

/** dist/src/api → dist/webmail */
export const DEFAULT_WEBMAIL_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../webmail');

const PAGE_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  'img-src * data: blob:',
  "connect-src 'self'",
  "frame-src 'self' blob: data:",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

export function serveWebmail(app: Express, dir: string = DEFAULT_WEBMAIL_DIR): void {
  const index = path.join(dir, 'index.html');
  const built = existsSync(index);
  if (built) {
    app.use(
      '/assets',
      express.static(path.join(dir, 'assets'), {
        immutable: true,
        maxAge: '365d',
        index: false,
      }),
    );
  }
  // an old or mistyped asset name: a JSON 404 (our error handler), never index.html
  app.use('/assets', (req: Request) => {
    throw new AppError('not_found', `no asset ${req.path}`);
  });
  // a middleware, not a route: the OpenAPI check walks the routes, and this is no API route
  app.use((req: Request, res: Response, next: NextFunction) => {
    if ((req.method !== 'GET' && req.method !== 'HEAD') || !wantsPage(req)) return next();
    if (!built) {
      res.status(503).type('text').send('The webmail is not built: run `npm run build` (the API under /api works without it).\n');
      return;
    }
    res.setHeader('Content-Security-Policy', PAGE_CSP);
    res.setHeader('Cache-Control', 'no-cache');
    res.sendFile(index);
  });
}

/**
 * A browser navigating to a page sends Accept: text/html; API clients, curl and health probes
 * do not, and get the JSON 404 for a path nobody serves.
 */
function wantsPage(req: Request): boolean {
  if (/^\/(?:api(?:\/|$)|healthz$|readyz$|metrics$|assets\/)/.test(req.path)) return false;
  return (req.get('accept') ?? '').includes('text/html');
}
