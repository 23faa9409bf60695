/**
 * multipartUpload(): the multer middleware for routes that take files (defineRoute's `upload`
 * option), with memory storage and the limits of the mail it feeds: each file at most
 * `maxFileBytes`, at most `maxFiles` files, files only in the named fields. Text fields land in
 * req.body, where the route's zod schema validates them as it does JSON.
 *
 * Every multer and busboy failure becomes an AppError, so the one error handler answers with
 * `{error, code}` JSON: a file or field too large is 413 payload_too_large; too many files or
 * fields, an unexpected file field or a malformed body is 400. A request whose declared length
 * exceeds `maxRequestBytes` is refused before any of it is read into memory.
 */
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import multer from 'multer';
import { AppError, type ErrorCode } from '../core/errors.js';

export interface UploadLimits {
  maxFileBytes: number;
  maxFiles: number;
  maxRequestBytes: number;
}

/** Text fields per request: a mail form has about ten; repeated to/cc/bcc fields count one each. */
const MAX_FIELDS = 1000;
const MAX_FIELD_NAME_BYTES = 100;

export function multipartUpload(fileFields: string[], limits: UploadLimits): { middleware: RequestHandler; fileFields: string[] } {
  const allowed = new Set(fileFields);
  const upload = multer({
    storage: multer.memoryStorage(),
    // browsers and FormData send UTF-8 file names without saying so
    defParamCharset: 'utf8',
    limits: {
      fileSize: limits.maxFileBytes,
      files: limits.maxFiles,
      fields: MAX_FIELDS,
      fieldSize: limits.maxRequestBytes,
      fieldNameSize: MAX_FIELD_NAME_BYTES,
      parts: MAX_FIELDS + limits.maxFiles,
    },
    fileFilter: (_req, file, cb) => {
      if (allowed.has(file.fieldname)) cb(null, true);
      else cb(new multer.MulterError('LIMIT_UNEXPECTED_FILE', file.fieldname));
    },
  }).any();

  const middleware = (req: Request, res: Response, next: NextFunction): void => {
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > limits.maxRequestBytes) {
      // answer at once and discard the body rather than buffer it
      res.setHeader('Connection', 'close');
      req.resume();
      next(new AppError('payload_too_large', `request body of ${declared} bytes is larger than the ${limits.maxRequestBytes} bytes a message may have`));
      return;
    }
    upload(req, res, (err?: unknown) => next(err === undefined || err === null ? undefined : toAppError(err, limits)));
  };
  return { middleware, fileFields };
}

/** Uploaded files in the order they came, from the middleware above. */
export function uploadedFiles(req: Request): Express.Multer.File[] {
  return Array.isArray(req.files) ? req.files : [];
}

function toAppError(err: unknown, limits: UploadLimits): AppError {
  if (err instanceof AppError) return err;
  if (err instanceof multer.MulterError) {
    const field = err.field ?? '';
    const [code, message] = describeMulterError(err.code, field, limits);
    return new AppError(code, message, { cause: err, details: [{ in: 'body', path: field, message }] });
  }
  return new AppError('bad_request', 'malformed multipart/form-data body', { cause: err });
}

function describeMulterError(code: string, field: string, limits: UploadLimits): [ErrorCode, string] {
  switch (code) {
    case 'LIMIT_FILE_SIZE':
      return ['payload_too_large', `file in ${field} is larger than the ${limits.maxFileBytes} bytes allowed per file`];
    case 'LIMIT_FIELD_VALUE':
      return ['payload_too_large', `field ${field} is larger than the ${limits.maxRequestBytes} bytes allowed`];
    case 'LIMIT_FILE_COUNT':
      return ['validation_failed', `too many files: at most ${limits.maxFiles} attachments`];
    case 'LIMIT_UNEXPECTED_FILE':
      return ['validation_failed', `unexpected file field "${printable(field)}": send files as attachments`];
    case 'LIMIT_PART_COUNT':
    case 'LIMIT_FIELD_COUNT':
      return ['validation_failed', 'too many fields in the form'];
    default:
      return ['validation_failed', `invalid form field "${printable(field)}" (${printable(code)})`];
  }
}

function printable(s: string): string {
  return s.replace(/[^\x20-\x7e]/g, '?').slice(0, 100);
}
