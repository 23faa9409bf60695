/**
 * /api/providers (owner/admin): the tenant's ESP providers (API.md "ESP providers"). The body is
 * flat, `{name, provider_type, enabled, priority?, ...fields}`, validated by one strict schema
 * per provider_type (delivery/providers/config.ts); credentials are write-only (responses list
 * which are set in `credentials_set`), and a PUT that omits one keeps the stored value.
 * `POST /api/providers/:id/test` checks the stored credentials against the provider and answers
 * `{success, message}` or `{success: false, error}` like /api/smtp/test. An id that is not one of
 * the caller's providers — another tenant's, or not an id at all — is a 404.
 */
import { z } from 'zod';
import { createProviderBody, updateProviderBody } from '../../delivery/providers/config.js';
import type { Actor } from '../../services/domains.service.js';
import type { ProvidersService } from '../../services/providers.service.js';
import type { Caller } from '../middleware/authenticate.js';
import { decodeCursor, page, pageQuery } from '../pagination.js';
import { defineRoute, type RouteDeps } from '../route.js';

const MANAGERS = ['owner', 'admin'] as const;
// the id is checked by the service (a malformed one is a 404 like any unknown id, not a 400)
const idParams = z.strictObject({ id: z.string() });

function actor(caller: Caller | null, ip: string): Actor {
  return { tenantId: caller!.tenantId, userId: caller!.userId, email: caller!.email, ip };
}

export function registerProviderRoutes(deps: RouteDeps, providers: ProvidersService): void {
  const base = { tag: 'providers', auth: 'user' as const, roles: [...MANAGERS] };
  defineRoute(
    deps,
    { ...base, method: 'get', path: '/api/providers', summary: "The tenant's ESP providers, newest first, cursor-paginated; credentials are never shown, only credentials_set", query: pageQuery, responses: { 200: { description: '{data, next_cursor}' } } },
    async ({ query, caller }) => {
      const rows = await providers.listProviders(caller!.tenantId, query.limit, decodeCursor(query.cursor));
      return { status: 200, body: page(rows, query.limit, (p) => ({ at: p.created_at, id: p.id })) };
    },
  );
  defineRoute(
    deps,
    {
      ...base,
      method: 'post',
      path: '/api/providers',
      summary:
        'Add an ESP provider. Fields by provider_type — sendgrid: api_key, webhook_public_key?; ses: access_key_id, secret_access_key, region, configuration_set?, sns_topic_arn?; mailgun: api_key, domain, region? (us|eu), webhook_signing_key?; msgraph: tenant_id, client_id, client_secret, sender?; smtp: host, port, secure?, user?, pass?',
      body: createProviderBody,
      responses: { 201: { description: '{id, name, provider_type, enabled, priority, ...settings, credentials_set, created_at, updated_at}' } },
    },
    async ({ body, caller, ip }) => ({ status: 201, body: await providers.createProvider(actor(caller, ip), body) }),
  );
  defineRoute(
    deps,
    { ...base, method: 'get', path: '/api/providers/:id', summary: 'One provider with its settings and the names of the credentials set', params: idParams, responses: { 200: { description: 'the provider' } } },
    async ({ params, caller }) => ({ status: 200, body: await providers.getProvider(caller!.tenantId, params.id) }),
  );
  defineRoute(
    deps,
    {
      ...base,
      method: 'put',
      path: '/api/providers/:id',
      summary: 'Change a provider: provider_type (the stored one) plus any fields; omitted fields keep their values (credentials included), null clears an optional one',
      params: idParams,
      body: updateProviderBody,
      responses: { 200: { description: 'the provider' } },
    },
    async ({ params, body, caller, ip }) => ({ status: 200, body: await providers.updateProvider(actor(caller, ip), params.id, body) }),
  );
  defineRoute(
    deps,
    { ...base, method: 'delete', path: '/api/providers/:id', summary: 'Delete a provider (mail already sent through it keeps its records)', params: idParams, responses: { 204: { description: 'deleted' } } },
    async ({ params, caller, ip }) => {
      await providers.deleteProvider(actor(caller, ip), params.id);
      return { status: 204 };
    },
  );
  defineRoute(
    deps,
    {
      ...base,
      method: 'post',
      path: '/api/providers/:id/test',
      summary: "Check the stored credentials against the provider (SendGrid: the key's scopes; SES: GetAccount; Mailgun: the domain; Graph: a token; SMTP: connect and log in)",
      params: idParams,
      responses: { 200: { description: '{success: true, message} or {success: false, error}' } },
    },
    async ({ params, caller, ip }) => ({ status: 200, body: await providers.testProvider(actor(caller, ip), params.id) }),
  );
}
