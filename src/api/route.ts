/**
 * defineRoute(): the one way a REST route is declared. It mounts the handler on the app with
 * authentication, role check and zod validation (strict schemas: unknown fields are 400, no mass
 * assignment), and records the route with its schemas in the registry the OpenAPI document is
 * generated from, so every route is documented by construction. Handlers stay thin: they get
 * the validated input and the caller, call one service method and return the response.
 */
import type { Express, Request, RequestHandler, Response } from 'express';
import type { z } from 'zod';
import { AppError } from '../core/errors.js';
import type { UserRole } from '../db/types.js';
import type { Caller } from './middleware/authenticate.js';

export type Method = 'get' | 'post' | 'put' | 'delete';

export interface RouteSpec<B extends z.ZodType, Q extends z.ZodType, P extends z.ZodType> {
  method: Method;
  /** Express path, e.g. `/api/domains/:id`. */
  path: string;
  summary: string;
  tag: string;
  /** 'none' for public routes; otherwise a Bearer access token is required. */
  auth: 'none' | 'user';
  /** Roles allowed (default: any authenticated user). */
  roles?: UserRole[];
  body?: B;
  /**
   * A multipart/form-data body: the middleware (api/multipart.ts) runs after authentication and
   * before validation, puts the text fields in req.body (validated by `body` like JSON) and the
   * files in req.files; `fileFields` are documented as binary fields.
   */
  upload?: { middleware: RequestHandler; fileFields: string[] };
  /**
   * The body is handed to the handler as the bytes received (signed webhooks verify them), never
   * parsed; documented with these media types. app.ts mounts the raw parser for such paths.
   */
  rawBody?: { contentTypes: string[] };
  query?: Q;
  params?: P;
  /** Success status → description (and response schema when useful). */
  responses: Record<number, { description: string; schema?: z.ZodType }>;
}

export interface HandlerInput<B, Q, P> {
  body: B;
  query: Q;
  params: P;
  caller: Caller | null;
  ip: string;
  /** The body as received, for routes declared with `rawBody` (empty when none was sent). */
  rawBody?: Buffer;
  req: Request;
  res: Response;
}

export interface HandlerResult {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
}

export type RegisteredRoute = RouteSpec<z.ZodType, z.ZodType, z.ZodType>;

export class RouteRegistry {
  readonly routes: RegisteredRoute[] = [];
}

export interface RouteDeps {
  app: Express;
  registry: RouteRegistry;
  authenticate: (req: Request) => Promise<Caller>;
}

export function defineRoute<B extends z.ZodType = z.ZodUndefined, Q extends z.ZodType = z.ZodUndefined, P extends z.ZodType = z.ZodUndefined>(
  deps: RouteDeps,
  spec: RouteSpec<B, Q, P>,
  handler: (input: HandlerInput<z.infer<B>, z.infer<Q>, z.infer<P>>) => Promise<HandlerResult>,
): void {
  deps.registry.routes.push(spec);
  deps.app[spec.method](spec.path, async (req: Request, res: Response) => {
    const caller = spec.auth === 'user' ? await deps.authenticate(req) : null;
    if (caller && spec.roles && !spec.roles.includes(caller.role)) {
      throw new AppError('forbidden', `this needs the ${spec.roles.join(' or ')} role`);
    }
    if (spec.upload) await runMiddleware(spec.upload.middleware, req, res);
    const body = parse(spec.body, req.body, 'body');
    const query = parse(spec.query, req.query, 'query');
    const params = parse(spec.params, req.params, 'path');
    const rawBody = spec.rawBody ? rawBytes(req) : undefined;
    const result = await handler({ body, query, params, caller, ip: req.ip ?? '', rawBody, req, res } as HandlerInput<z.infer<B>, z.infer<Q>, z.infer<P>>);
    if (res.headersSent) return;
    for (const [k, v] of Object.entries(result.headers ?? {})) res.setHeader(k, v);
    if (result.body === undefined) res.status(result.status).end();
    else res.status(result.status).json(result.body);
  });
}

function rawBytes(req: Request): Buffer {
  const body: unknown = req.body;
  if (Buffer.isBuffer(body)) return body;
  if (body === undefined) return Buffer.alloc(0);
  throw new AppError('internal', `${req.path} takes a raw body but it was parsed before reaching the route`);
}

function runMiddleware(middleware: RequestHandler, req: Request, res: Response): Promise<void> {
  return new Promise((resolve, reject) => {
    void middleware(req, res, (err?: unknown) => (err ? reject(err instanceof Error ? err : new Error('upload middleware failed')) : resolve()));
  });
}

function parse(schema: z.ZodType | undefined, value: unknown, where: string): unknown {
  if (!schema) return undefined;
  const parsed = schema.safeParse(where === 'body' && value === undefined ? {} : value);
  if (parsed.success) return parsed.data;
  throw new AppError('validation_failed', `invalid request ${where}: ${parsed.error.issues.map((i) => describeIssue(i)).join('; ')}`, {
    details: parsed.error.issues.map((i) => ({ in: where, path: i.path.join('.'), message: i.message })),
  });
}

function describeIssue(issue: z.core.$ZodIssue): string {
  const path = issue.path.join('.');
  return path ? `${path}: ${issue.message}` : issue.message;
}
