/**
 * Admin → Audit log (`/admin/audit`): who did what, when, from which IP (GET /api/audit-logs),
 * newest first, with "Load more" following next_cursor. Details are shown compactly; the API
 * never records secrets, so nothing needs hiding here.
 */
import { Empty, ErrorBanner, formatFullDate, Loading } from '../ui';
import './admin.css';
import type { AuditEntry } from './types';
import { usePagedList } from './use-paged-list';

export function AuditPage() {
  const list = usePagedList<AuditEntry>('/api/audit-logs');
  return (
    <div className="admin-page">
      <h2>Audit log</h2>
      <ErrorBanner error={list.error} onDismiss={list.clearError} />
      {list.loading ? (
        <Loading label="Loading the audit log…" />
      ) : list.items.length === 0 ? (
        !list.error && <Empty>Nothing recorded yet.</Empty>
      ) : (
        <table className="audit stack-narrow" aria-label="Audit log">
          <thead>
            <tr>
              <th scope="col">Time</th>
              <th scope="col">Actor</th>
              <th scope="col">Action</th>
              <th scope="col">Target</th>
              <th scope="col">IP</th>
            </tr>
          </thead>
          <tbody>
            {list.items.map((e) => (
              <tr key={e.id} data-testid="audit-row">
                <td data-label="Time" className="nowrap">
                  <time dateTime={e.created_at}>{formatFullDate(e.created_at)}</time>
                </td>
                <td data-label="Actor">{e.actor_email ?? <span className="muted">system</span>}</td>
                <td data-label="Action">
                  <code>{e.action}</code>
                  {detailsText(e.details) && <div className="muted small details">{detailsText(e.details)}</div>}
                </td>
                <td data-label="Target">
                  {e.target_type ?? '—'}
                  {e.target_id && (
                    // ids are long uuids: the first block tells rows apart, the full one is in the tooltip
                    <code title={e.target_id}> {e.target_id.slice(0, 8)}</code>
                  )}
                </td>
                <td data-label="IP" className="nowrap">{e.ip ?? '—'}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {list.hasMore && (
        <button type="button" className="secondary load-more" disabled={list.loadingMore} onClick={list.loadMore}>
          {list.loadingMore ? 'Loading…' : 'Load more'}
        </button>
      )}
    </div>
  );
}

/** `key: value` pairs of an entry's details, on one line. */
function detailsText(details: unknown): string {
  if (details === null || typeof details !== 'object') return '';
  return Object.entries(details as Record<string, unknown>)
    .map(([k, v]) => `${k}: ${typeof v === 'string' ? v : JSON.stringify(v)}`)
    .join(' · ');
}
