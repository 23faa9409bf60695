/**
 * AuditService: who did what, when, from which IP — every change made through the API and every
 * login attempt. Records never hold secrets (passwords, tokens, keys).
 */
import type { Selectable } from 'kysely';
import type { Db } from '../db/database.js';
import { newestFirst, type KeysetPosition } from '../db/keyset.js';
import type { AuditLogsTable } from '../db/types.js';

export type AuditRow = Omit<Selectable<AuditLogsTable>, 'tenant_id'>;

export interface AuditEntry {
  tenantId: string | null;
  actorUserId?: string | null;
  actorEmail?: string | null;
  action: string;
  targetType?: string;
  targetId?: string;
  ip?: string;
  details?: Record<string, unknown>;
}

export class AuditService {
  constructor(private readonly db: Db) {}

  async record(e: AuditEntry): Promise<void> {
    await this.db
      .insertInto('audit_logs')
      .values({
        tenant_id: e.tenantId,
        actor_user_id: e.actorUserId ?? null,
        actor_email: e.actorEmail ?? null,
        action: e.action,
        target_type: e.targetType ?? null,
        target_id: e.targetId ?? null,
        ip: e.ip ?? null,
        details: e.details === undefined ? null : JSON.stringify(e.details),
      })
      .execute();
  }

  /** A tenant's entries, newest first, after an optional (created_at, id) position; limit + 1 rows. */
  async list(tenantId: string, limit: number, before: KeysetPosition | null): Promise<AuditRow[]> {
    const query = this.db
      .selectFrom('audit_logs')
      .select(['id', 'actor_user_id', 'actor_email', 'action', 'target_type', 'target_id', 'ip', 'details', 'created_at'])
      .where('tenant_id', '=', tenantId);
    return newestFirst(query, before, limit).execute();
  }
}
