/**
 * /api/audit-logs (owner/admin): the tenant's audit trail, newest first, cursor-paginated.
 */
import type { AuditService } from '../../services/audit.service.js';
import { decodeCursor, page, pageQuery } from '../pagination.js';
import { defineRoute, type RouteDeps } from '../route.js';

export function registerAuditRoutes(deps: RouteDeps, audit: AuditService): void {
  defineRoute(
    deps,
    {
      method: 'get',
      path: '/api/audit-logs',
      tag: 'audit',
      summary: 'Who did what, when, from which IP: every change through the API and every login',
      auth: 'user',
      roles: ['owner', 'admin'],
      query: pageQuery,
      responses: { 200: { description: '{data, next_cursor}' } },
    },
    async ({ query, caller }) => {
      const rows = await audit.list(caller!.tenantId, query.limit, decodeCursor(query.cursor));
      return { status: 200, body: page(rows, query.limit, (r) => ({ at: r.created_at, id: r.id })) };
    },
  );
}
