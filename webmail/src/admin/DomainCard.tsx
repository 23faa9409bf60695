/**
 * One domain on the Domains page: its status, the DNS records to publish (GET
 * /api/domains/:id/dns-records) with a copy button per value, the per-record results of the
 * last check, Verify and Delete.
 *
 * Verification runs as a background job: POST verify answers 202, so the card polls GET
 * /api/domains/:id once a second until `last_checked_at` moves (or VERIFY_POLL_MS passes) and
 * then shows the new status and results.
 */
import { useEffect, useId, useRef, useState } from 'react';
import { api } from '../api';
import { ErrorBanner, formatFullDate } from '../ui';
import { ConfirmDelete } from './ConfirmDelete';
import { CopyButton } from './CopyButton';
import type { CheckStatus, DnsRecord, Domain, RecordKey } from './types';

const VERIFY_POLL_MS = 10_000;
const VERIFY_POLL_INTERVAL_MS = 1_000;

/** How each record is named on the page; its copy button's description names it too. */
const RECORD_LABELS: Record<RecordKey, string> = { mx: 'MX', spf: 'SPF', dkim: 'DKIM', dmarc: 'DMARC', verification: 'Verification' };

const CHECK_TEXT: Record<CheckStatus, string> = { ok: 'Found', missing: 'Missing', mismatch: 'Does not match', error: 'DNS did not answer' };

interface Props {
  domain: Domain;
  onChanged: (d: Domain) => void;
  onDeleted: (d: Domain) => void;
}

export function DomainCard({ domain, onChanged, onDeleted }: Props) {
  const headingId = useId();
  const [records, setRecords] = useState<DnsRecord[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [checking, setChecking] = useState(false);
  const [checkNote, setCheckNote] = useState('');
  const alive = useRef(true);
  useEffect(() => {
    alive.current = true;
    return () => {
      alive.current = false;
    };
  }, []);

  useEffect(() => {
    let current = true;
    api<{ records: DnsRecord[] }>('GET', `/api/domains/${domain.id}/dns-records`)
      .then((r) => current && setRecords(r.records))
      .catch((err: unknown) => current && setError(err));
    return () => {
      current = false;
    };
    // a new DKIM selector or key changes the records
  }, [domain.id, domain.dkim_selector]);

  const verify = async () => {
    setError(null);
    setChecking(true);
    setCheckNote('Checking DNS…');
    try {
      const before = domain.last_checked_at;
      await api('POST', `/api/domains/${domain.id}/verify`, {});
      const after = await pollUntilChecked(domain.id, before, () => alive.current);
      if (!alive.current) return;
      if (after) {
        onChanged(after);
        setCheckNote(after.status === 'verified' ? `${after.name} is verified.` : `${after.name} is not verified yet${after.status_reason ? `: ${after.status_reason}` : '.'}`);
      } else {
        setCheckNote('The check is still running. Press Verify again in a minute to see its result.');
      }
    } catch (err) {
      if (alive.current) {
        setError(err);
        setCheckNote('');
      }
    } finally {
      if (alive.current) setChecking(false);
    }
  };

  const remove = async () => {
    try {
      await api('DELETE', `/api/domains/${domain.id}`);
      onDeleted(domain);
    } catch (err) {
      setError(err);
    }
  };

  return (
    <article className="card" aria-labelledby={headingId} data-testid="domain-row" data-domain={domain.name}>
      <header className="card-head">
        <h3 id={headingId}>{domain.name}</h3>
        <span className={`badge badge-${domain.status}`} data-testid="domain-status">
          {domain.status}
        </span>
        <span className="card-actions">
          <button type="button" disabled={checking} onClick={() => void verify()}>
            Verify
          </button>
          <ConfirmDelete subject={domain.name} onConfirm={remove} />
        </span>
      </header>
      <p className="muted">
        DKIM selector <code>{domain.dkim_selector}</code>
        {domain.last_checked_at ? ` · last checked ${formatFullDate(domain.last_checked_at)}` : ' · not checked yet'}
      </p>
      {domain.status !== 'verified' && domain.status_reason && <p className="muted">{domain.status_reason}</p>}
      <p role="status" aria-live="polite" className="check-note">
        {checkNote}
      </p>
      <ErrorBanner error={error} onDismiss={() => setError(null)} />
      {records === null ? !error && <p className="muted">Loading DNS records…</p> : <RecordsTable domain={domain} records={records} />}
    </article>
  );
}

function RecordsTable({ domain, records }: { domain: Domain; records: DnsRecord[] }) {
  const rowId = useId();
  return (
    <table className="records stack-narrow" aria-label={`DNS records for ${domain.name}`}>
      <thead>
        <tr>
          <th scope="col">Record</th>
          <th scope="col">Type</th>
          <th scope="col">Name</th>
          <th scope="col">Value</th>
          <th scope="col">Priority</th>
          <th scope="col">Check</th>
        </tr>
      </thead>
      <tbody>
        {records.map((r) => {
          const check = domain.dns_results?.[r.record];
          const label = RECORD_LABELS[r.record];
          return (
            <tr key={r.record} data-record={r.record}>
              <td data-label="Record" id={`${rowId}-${r.record}`}>
                {label}
                {!r.required && <span className="muted"> (optional)</span>}
                <div className="muted small">{r.purpose}</div>
              </td>
              <td data-label="Type">{r.type}</td>
              <td data-label="Name">
                <code className="dns-value">{r.host}</code>
              </td>
              <td data-label="Value">
                <code className="dns-value">{r.value}</code>
                {/* the name follows the UI contract ("Copy TXT record value", several TXT
                    records share it); the description says which record it is */}
                <CopyButton value={r.value} label={`Copy ${r.type} record value`} describedBy={`${rowId}-${r.record}`} />
              </td>
              <td data-label="Priority">{r.priority ?? '—'}</td>
              <td data-label="Check" data-testid="record-check">
                {check ? (
                  <span className={`check check-${check.status}`} title={check.detail}>
                    {CHECK_TEXT[check.status]}
                    {check.detail && <div className="muted small">{check.detail}</div>}
                  </span>
                ) : (
                  <span className="muted">not checked</span>
                )}
              </td>
            </tr>
          );
        })}
      </tbody>
    </table>
  );
}

/** The domain once its last_checked_at differs from `before`, or null when the wait ran out. */
async function pollUntilChecked(id: string, before: string | null, stillWanted: () => boolean): Promise<Domain | null> {
  const deadline = Date.now() + VERIFY_POLL_MS;
  while (Date.now() < deadline && stillWanted()) {
    await new Promise((resolve) => setTimeout(resolve, VERIFY_POLL_INTERVAL_MS));
    const domain = await api<Domain>('GET', `/api/domains/${id}`);
    if (domain.last_checked_at !== before) return domain;
  }
  return null;
}
