/**
 * The API's error handler: every error becomes `{error, code, details?}` JSON with the status
 * from the one table (api/http-status.ts). Body-parser errors (too large, bad JSON) become
 * 413/400 JSON, never an HTML page. Unknown errors are a 500 with a generic message; the real
 * one goes to the log with the request id.
 */
import type { NextFunction, Request, Response } from 'express';
import { AppError, isAppError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import { HTTP_STATUS } from '../http-status.js';

interface BodyParserError {
  type?: string;
  status?: number;
  limit?: number;
}

export function toAppError(err: unknown): AppError | null {
  if (isAppError(err)) return err;
  const bp = err as BodyParserError | null;
  if (bp && typeof bp === 'object' && typeof bp.type === 'string') {
    if (bp.type === 'entity.too.large') return new AppError('payload_too_large', `request body is larger than ${bp.limit ?? 'the'} bytes allowed`);
    if (bp.type === 'entity.parse.failed') return new AppError('bad_request', 'request body is not valid JSON');
    if (bp.type === 'charset.unsupported' || bp.type === 'encoding.unsupported') return new AppError('bad_request', 'unsupported request body encoding');
    if (bp.status && bp.status >= 400 && bp.status < 500) return new AppError('bad_request', 'malformed request body');
  }
  return null;
}

export function createErrorHandler(logger: Logger) {
  return (err: unknown, req: Request, res: Response, _next: NextFunction): void => {
    const appError = toAppError(err);
    if (!appError) {
      logger.error({ err, req_id: req.id }, 'unhandled error in API request');
      res.status(500).json({ error: 'Internal server error', code: 'internal' });
      return;
    }
    const status = HTTP_STATUS[appError.code];
    if (status >= 500) logger.error({ err: appError, cause: appError.cause, req_id: req.id }, 'API request failed');
    if (appError.retryAfterSeconds !== undefined) res.setHeader('Retry-After', String(Math.max(1, Math.ceil(appError.retryAfterSeconds))));
    res.status(status).json({
      error: status >= 500 && appError.kind !== 'temporary' ? 'Internal server error' : appError.message,
      code: appError.code,
      ...(appError.details === undefined ? {} : { details: appError.details }),
    });
  };
}
