/**
 * Admin → Providers (`/admin/providers`): the tenant's ESP providers (SendGrid, SES, Mailgun,
 * Microsoft Graph, an SMTP relay). Add one with the fields its type needs, test its stored
 * credentials, enable/disable it, delete it. Credentials are write-only: the list only names
 * which are set (`credentials_set`), and the add form clears them once sent.
 */
import { useState } from 'react';
import { api } from '../api';
import { Empty, ErrorBanner, Loading, Notice, useAction } from '../ui';
import './admin.css';
import { ConfirmDelete } from './ConfirmDelete';
import { ProviderForm } from './ProviderForm';
import { credentialLabels, PROVIDER_TYPE_LABELS, shownSettings } from './provider-fields';
import type { Provider, TestResult } from './types';
import { usePagedList } from './use-paged-list';

export function ProvidersPage() {
  const list = usePagedList<Provider>('/api/providers');
  const [notice, setNotice] = useState('');

  const remove = (p: Provider) => {
    list.drop(p);
    setNotice(`Deleted ${p.name}.`);
  };
  const added = (p: Provider) => {
    list.put(p);
    setNotice(`Added ${p.name}. Press Test to check its credentials.`);
  };

  return (
    <div className="admin-page">
      <h2>Providers</h2>
      <p className="muted">
        Email service providers that can carry your organisation's outgoing mail. Enabled providers are tried by priority (lowest
        number first).
      </p>
      <ProviderForm onAdded={added} />
      {notice && <Notice>{notice}</Notice>}
      <ErrorBanner error={list.error} onDismiss={list.clearError} />
      {list.loading ? (
        <Loading label="Loading providers…" />
      ) : list.items.length === 0 ? (
        !list.error && <Empty>No providers yet: mail goes out by the server's default route.</Empty>
      ) : (
        <ul className="rows" aria-label="Providers">
          {list.items.map((p) => (
            <ProviderRow key={p.id} provider={p} onChanged={list.put} onDeleted={remove} />
          ))}
        </ul>
      )}
      {list.hasMore && (
        <button type="button" className="secondary" disabled={list.loadingMore} onClick={list.loadMore}>
          {list.loadingMore ? 'Loading…' : 'Load more'}
        </button>
      )}
    </div>
  );
}

function ProviderRow({ provider, onChanged, onDeleted }: { provider: Provider; onChanged: (p: Provider) => void; onDeleted: (p: Provider) => void }) {
  const { busy, error, setError, run } = useAction();
  const [result, setResult] = useState<TestResult | null>(null);

  const test = () =>
    run(async () => {
      setResult(null);
      setResult(await api<TestResult>('POST', `/api/providers/${provider.id}/test`));
    });
  const toggle = () =>
    run(async () => {
      onChanged(await api<Provider>('PUT', `/api/providers/${provider.id}`, { provider_type: provider.provider_type, enabled: !provider.enabled }));
    });
  const remove = () =>
    run(async () => {
      await api('DELETE', `/api/providers/${provider.id}`);
      onDeleted(provider);
    });

  const settings = shownSettings(provider.provider_type, provider);
  return (
    <li className="row" data-testid="provider-row" data-name={provider.name}>
      <div className="row-main">
        <div>
          <strong>{provider.name}</strong> <span className="muted">· {PROVIDER_TYPE_LABELS[provider.provider_type]}</span>
        </div>
        <div className="muted small">
          <span data-testid="provider-state">{provider.enabled ? 'enabled' : 'disabled'}</span> · priority {provider.priority}
          {settings.map((s) => (
            <span key={s.label}>
              {' '}
              · {s.label}: {s.value}
            </span>
          ))}
        </div>
        <div className="muted small">
          Credentials: {provider.credentials_set.length > 0 ? `${credentialLabels(provider.provider_type, provider.credentials_set)} (stored, not shown)` : 'none stored'}
        </div>
        <div role="status" aria-live="polite">
          {busy && !result && <span className="muted small">Working…</span>}
          {result && (result.success ? <span className="ok-text">{result.message}</span> : <span className="danger-text">{result.error}</span>)}
        </div>
      </div>
      <div className="row-actions">
        <button type="button" className="secondary" disabled={busy} onClick={() => void test()}>
          Test
        </button>
        <button type="button" className="secondary" disabled={busy} onClick={() => void toggle()}>
          {provider.enabled ? 'Disable' : 'Enable'}
        </button>
        <ConfirmDelete subject={provider.name} onConfirm={remove} />
      </div>
      <ErrorBanner error={error} onDismiss={() => setError(null)} />
    </li>
  );
}
