/**
 * The OpenAPI 3.1 document, generated from the route registry (every route declared with
 * defineRoute, with its zod schemas converted by zod's own JSON Schema generator), served at
 * /api/openapi.json, and a dependency-free browsable page at /api/docs.
 */
import { z } from 'zod';
import type { RegisteredRoute, RouteRegistry } from './route.js';

export function buildOpenApi(registry: RouteRegistry, info: { version: string }): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const r of registry.routes) {
    const path = r.path.replace(/:([A-Za-z_]+)/g, '{$1}');
    const parameters: unknown[] = [];
    for (const [where, schema] of [
      ['path', r.params],
      ['query', r.query],
    ] as const) {
      if (!schema) continue;
      const json = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as { properties?: Record<string, unknown>; required?: string[] };
      for (const [name, s] of Object.entries(json.properties ?? {})) {
        parameters.push({ name, in: where, required: where === 'path' || (json.required ?? []).includes(name), schema: s });
      }
    }
    const responses: Record<string, unknown> = {};
    for (const [status, res] of Object.entries(r.responses)) {
      responses[status] = {
        description: res.description,
        ...(res.schema ? { content: { 'application/json': { schema: z.toJSONSchema(res.schema, { unrepresentable: 'any' }) } } } : {}),
      };
    }
    responses.default = { description: 'error', content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } };
    paths[path] ??= {};
    paths[path][r.method] = {
      summary: r.summary,
      tags: [r.tag],
      ...(r.auth === 'user' ? { security: [{ bearer: [] }] } : { security: [] }),
      ...(r.roles ? { 'x-roles': r.roles } : {}),
      ...(parameters.length > 0 ? { parameters } : {}),
      ...(r.body ? { requestBody: { required: true, content: requestContent(r) } } : {}),
      ...(r.rawBody ? { requestBody: { required: true, content: Object.fromEntries(r.rawBody.contentTypes.map((t) => [t, { schema: {} }])) } } : {}),
      responses,
    };
  }
  return {
    openapi: '3.1.0',
    info: { title: 'mailserver REST API', version: info.version },
    servers: [{ url: '/' }],
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } },
      schemas: {
        Error: {
          type: 'object',
          required: ['error', 'code'],
          properties: { error: { type: 'string' }, code: { type: 'string' }, details: { type: 'array', items: {} } },
        },
      },
    },
    paths,
  };
}

/** A JSON body, or a multipart/form-data one whose file fields are binary arrays. */
function requestContent(r: RegisteredRoute): Record<string, unknown> {
  const schema = z.toJSONSchema(r.body!, { io: 'input', unrepresentable: 'any' }) as { properties?: Record<string, unknown> };
  if (!r.upload) return { 'application/json': { schema } };
  const files = Object.fromEntries(r.upload.fileFields.map((f) => [f, { type: 'array', items: { type: 'string', format: 'binary' } }]));
  return { 'multipart/form-data': { schema: { ...schema, properties: { ...schema.properties, ...files } } } };
}

/** A small page listing every operation from /api/openapi.json (no CDN, no inline script). */
export function docsPage(): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>mailserver API</title>
<link rel="stylesheet" href="/api/docs/docs.css"></head>
<body><h1>mailserver REST API</h1>
<p>Machine-readable: <a href="/api/openapi.json">/api/openapi.json</a> (OpenAPI 3.1). Authenticate with <code>Authorization: Bearer &lt;access_token&gt;</code> from <code>POST /api/auth/login</code>.</p>
<div id="ops">Loading…</div>
<script src="/api/docs/docs.js"></script></body></html>`;
}

export const DOCS_CSS = `body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
details{border:1px solid #ddd;border-radius:6px;margin:.4rem 0;padding:.3rem .7rem}summary{cursor:pointer}
.m{display:inline-block;width:4.2rem;font-weight:600;text-transform:uppercase}.get{color:#0a6}.post{color:#06c}.put{color:#a60}.delete{color:#c22}
pre{background:#f6f6f6;padding:.5rem;overflow:auto;font-size:13px}code{background:#f3f3f3;padding:0 .2rem}`;

export const DOCS_JS = `fetch('/api/openapi.json').then(function(r){return r.json()}).then(function(doc){
var root=document.getElementById('ops');root.textContent='';
Object.keys(doc.paths).forEach(function(p){Object.keys(doc.paths[p]).forEach(function(m){var op=doc.paths[p][m];
var d=document.createElement('details');var s=document.createElement('summary');
var b=document.createElement('span');b.className='m '+m;b.textContent=m;s.appendChild(b);
s.appendChild(document.createTextNode(p+' \\u2014 '+op.summary+(op.security&&op.security.length?' (auth'+(op['x-roles']?': '+op['x-roles'].join('/'):'')+')':'')));
d.appendChild(s);var pre=document.createElement('pre');pre.textContent=JSON.stringify({parameters:op.parameters,requestBody:op.requestBody,responses:op.responses},null,2);
d.appendChild(pre);root.appendChild(d);});});});`;
