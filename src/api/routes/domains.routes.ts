/**
 * /api/domains (owner/admin): the tenant's domains, the DNS records to publish for each, and DNS
 * verification (API.md "Domains"). An id that is not one of the caller's domains — another
 * tenant's, or not an id at all — is a 404.
 */
import { z } from 'zod';
import type { Caller } from '../middleware/authenticate.js';
import type { Actor, DomainsService } from '../../services/domains.service.js';
import { decodeCursor, page, pageQuery } from '../pagination.js';
import { defineRoute, type RouteDeps } from '../route.js';

const MANAGERS = ['owner', 'admin'] as const;
// the id is checked by the service (a malformed one is a 404 like any unknown id, not a 400)
const idParams = z.strictObject({ id: z.string() });

function actor(caller: Caller | null, ip: string): Actor {
  return { tenantId: caller!.tenantId, userId: caller!.userId, email: caller!.email, ip };
}

export function registerDomainRoutes(deps: RouteDeps, domains: DomainsService): void {
  const base = { tag: 'domains', auth: 'user' as const, roles: [...MANAGERS] };
  defineRoute(
    deps,
    { ...base, method: 'get', path: '/api/domains', summary: "The tenant's domains, newest first, cursor-paginated", query: pageQuery, responses: { 200: { description: '{data, next_cursor}' } } },
    async ({ query, caller }) => {
      const rows = await domains.listDomains(caller!.tenantId, query.limit, decodeCursor(query.cursor));
      return { status: 200, body: page(rows, query.limit, (d) => ({ at: d.created_at, id: d.id })) };
    },
  );
  defineRoute(
    deps,
    {
      ...base,
      method: 'post',
      path: '/api/domains',
      summary: 'Add a domain: generates its DKIM key (RSA 2048) and verification token; returns the DNS records to publish',
      body: z.strictObject({ name: z.string().trim().min(1, 'is required').max(253) }),
      responses: { 201: { description: '{id, name, status: "pending", dns_records, ...}' } },
    },
    async ({ body, caller, ip }) => ({ status: 201, body: await domains.addDomain(actor(caller, ip), body.name) }),
  );
  defineRoute(
    deps,
    { ...base, method: 'get', path: '/api/domains/:id', summary: 'A domain with its status, per-record DNS results and the records to publish', params: idParams, responses: { 200: { description: 'the domain' } } },
    async ({ params, caller }) => ({ status: 200, body: await domains.getDomain(caller!.tenantId, params.id) }),
  );
  defineRoute(
    deps,
    {
      ...base,
      method: 'put',
      path: '/api/domains/:id',
      summary: 'Change the DKIM selector and/or generate a new DKIM key (a new key needs a new selector; one is chosen when none is given). Publish the new DKIM record, then verify again',
      params: idParams,
      body: z.strictObject({ dkim_selector: z.string().trim().toLowerCase().min(1).max(63).optional(), rotate_dkim_key: z.boolean().optional() }),
      responses: { 200: { description: 'the domain with its new DNS records' } },
    },
    async ({ params, body, caller, ip }) => ({ status: 200, body: await domains.updateDomain(actor(caller, ip), params.id, body) }),
  );
  defineRoute(
    deps,
    {
      ...base,
      method: 'delete',
      path: '/api/domains/:id',
      summary: 'Delete a domain; refused (409, with the count) while it has mailboxes',
      params: idParams,
      responses: { 204: { description: 'deleted' } },
    },
    async ({ params, caller, ip }) => {
      await domains.deleteDomain(actor(caller, ip), params.id);
      return { status: 204 };
    },
  );
  defineRoute(
    deps,
    {
      ...base,
      method: 'get',
      path: '/api/domains/:id/dns-records',
      summary: 'The exact MX, SPF, DKIM, DMARC and verification records to publish: {domain, records: [{record, type, host, value, priority?, required, purpose}]}',
      params: idParams,
      responses: { 200: { description: '{domain, records}' } },
    },
    async ({ params, caller }) => ({ status: 200, body: await domains.dnsRecords(caller!.tenantId, params.id) }),
  );
  defineRoute(
    deps,
    {
      ...base,
      method: 'post',
      path: '/api/domains/:id/verify',
      summary: 'Queue a DNS check; GET the domain for its status (verified when MX, SPF, DKIM and the token match) and per-record results',
      params: idParams,
      body: z.strictObject({}),
      responses: { 202: { description: '{id, name, status, message}' } },
    },
    async ({ params, caller, ip }) => ({ status: 202, body: await domains.requestVerification(actor(caller, ip), params.id) }),
  );
}
