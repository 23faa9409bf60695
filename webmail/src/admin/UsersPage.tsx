/**
 * Admin → Users (`/admin/users`): create a user (an address on one of the tenant's domains gets
 * a mailbox with the given quota), and per user see the quota in use, suspend or reactivate,
 * set a new password, delete. Role rules (only an owner grants admin/owner, the last owner
 * stays) are the server's: its refusals are shown as they come.
 */
import { useState, type FormEvent } from 'react';
import { api } from '../api';
import { Empty, ErrorBanner, Loading, Notice, useAction } from '../ui';
import './admin.css';
import type { AdminUser, Role } from './types';
import { usePagedList } from './use-paged-list';
import { UserRow } from './UserRow';

export function UsersPage() {
  const list = usePagedList<AdminUser>('/api/users');
  const [notice, setNotice] = useState('');

  const remove = (user: AdminUser) => {
    list.drop(user);
    setNotice(`Deleted ${user.email}.`);
  };
  const created = (user: AdminUser) => {
    list.put(user);
    setNotice(`Created ${user.email}${user.mailbox ? '' : " (no mailbox: the address is not on one of your domains)"}.`);
  };

  return (
    <div className="admin-page">
      <h2>Users</h2>
      <CreateUserForm onCreated={created} />
      {notice && <Notice>{notice}</Notice>}
      <ErrorBanner error={list.error} onDismiss={list.clearError} />
      {list.loading ? (
        <Loading label="Loading users…" />
      ) : list.items.length === 0 ? (
        !list.error && <Empty>No users yet.</Empty>
      ) : (
        <ul className="rows" aria-label="Users">
          {list.items.map((u) => (
            <UserRow key={u.id} user={u} onChanged={list.put} onDeleted={remove} onNotice={setNotice} />
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

const EMPTY_FORM = { email: '', name: '', password: '', role: 'member' as Role, quota: '' };

function CreateUserForm({ onCreated }: { onCreated: (u: AdminUser) => void }) {
  const [form, setForm] = useState(EMPTY_FORM);
  const { busy, error, setError, run } = useAction();
  const set = (key: keyof typeof EMPTY_FORM) => (e: { target: { value: string } }) => setForm((f) => ({ ...f, [key]: e.target.value }));

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    await run(async () => {
      const body: Record<string, unknown> = { email: form.email.trim(), password: form.password, role: form.role };
      if (form.name.trim()) body.name = form.name.trim();
      if (form.quota.trim()) body.quota_mb = Number(form.quota);
      onCreated(await api<AdminUser>('POST', '/api/users', body));
      setForm(EMPTY_FORM);
    });
  };

  return (
    <form className="grid-form" aria-label="Create user" noValidate onSubmit={(e) => void submit(e)}>
      <div className="field">
        <label htmlFor="new-user-email">Email</label>
        <input id="new-user-email" type="email" value={form.email} onChange={set('email')} required autoComplete="off" />
      </div>
      <div className="field">
        <label htmlFor="new-user-name">Name</label>
        <input id="new-user-name" value={form.name} onChange={set('name')} autoComplete="off" />
      </div>
      <div className="field">
        <label htmlFor="new-user-password">Password</label>
        <input id="new-user-password" type="password" value={form.password} onChange={set('password')} required autoComplete="new-password" />
      </div>
      <div className="field">
        <label htmlFor="new-user-role">Role</label>
        <select id="new-user-role" value={form.role} onChange={set('role')}>
          <option value="member">Member</option>
          <option value="admin">Admin</option>
          <option value="owner">Owner</option>
        </select>
      </div>
      <div className="field">
        <label htmlFor="new-user-quota">Quota (MB)</label>
        <input id="new-user-quota" type="number" inputMode="numeric" min={1} step={1} value={form.quota} onChange={set('quota')} placeholder="default" />
      </div>
      <div className="form-actions">
        <button type="submit" disabled={busy}>
          {busy ? 'Creating…' : 'Create user'}
        </button>
      </div>
      <ErrorBanner error={error} onDismiss={() => setError(null)} />
    </form>
  );
}
