/**
 * Admin → Domains (`/admin/domains`): add a domain, see the DNS records to publish for each (with
 * copy buttons), ask for a DNS check and watch its result, delete a domain. The API's texts
 * (e.g. "domain already exists", the 409 while mailboxes remain) are shown as they come.
 */
import { useState, type FormEvent } from 'react';
import { api } from '../api';
import { Empty, ErrorBanner, Loading, Notice, useAction } from '../ui';
import './admin.css';
import { DomainCard } from './DomainCard';
import type { Domain } from './types';
import { usePagedList } from './use-paged-list';

export function DomainsPage() {
  const list = usePagedList<Domain>('/api/domains');
  const [notice, setNotice] = useState('');

  const remove = (domain: Domain) => {
    list.drop(domain);
    setNotice(`Deleted ${domain.name}.`);
  };
  const added = (domain: Domain) => {
    list.put(domain);
    setNotice(`Added ${domain.name}. Publish its DNS records below, then press Verify.`);
  };

  return (
    <div className="admin-page">
      <h2>Domains</h2>
      <AddDomainForm onAdded={added} />
      {notice && <Notice>{notice}</Notice>}
      <ErrorBanner error={list.error} onDismiss={list.clearError} />
      {list.loading ? (
        <Loading label="Loading domains…" />
      ) : list.items.length === 0 ? (
        !list.error && <Empty>No domains yet. Add the domain your addresses will use.</Empty>
      ) : (
        <div className="cards">
          {list.items.map((d) => (
            <DomainCard key={d.id} domain={d} onChanged={list.put} onDeleted={remove} />
          ))}
        </div>
      )}
      {list.hasMore && (
        <button type="button" className="secondary" disabled={list.loadingMore} onClick={list.loadMore}>
          {list.loadingMore ? 'Loading…' : 'Load more'}
        </button>
      )}
    </div>
  );
}

function AddDomainForm({ onAdded }: { onAdded: (d: Domain) => void }) {
  const [name, setName] = useState('');
  const { busy, error, setError, run } = useAction();

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    await run(async () => {
      onAdded(await api<Domain>('POST', '/api/domains', { name: name.trim() }));
      setName('');
    });
  };

  return (
    <form className="inline-form" aria-label="Add domain" onSubmit={(e) => void submit(e)}>
      <div className="field">
        <label htmlFor="domain-name">Domain name</label>
        <input id="domain-name" value={name} onChange={(e) => setName(e.target.value)} placeholder="example.com" required autoComplete="off" spellCheck={false} />
      </div>
      <button type="submit" disabled={busy || name.trim() === ''}>
        {busy ? 'Adding…' : 'Add domain'}
      </button>
      <ErrorBanner error={error} onDismiss={() => setError(null)} />
    </form>
  );
}
