/**
 * One user on the Users page: email, name, role, status, a quota bar (used_bytes of quota_mb),
 * Suspend/Activate, "Reset password" (reveals a field and "Set password") and Delete.
 */
import { useId, useState, type FormEvent } from 'react';
import { api } from '../api';
import { ErrorBanner, formatBytes, useAction } from '../ui';
import { ConfirmDelete } from './ConfirmDelete';
import type { AdminUser } from './types';

const BYTES_PER_MB = 1024 * 1024;

interface Props {
  user: AdminUser;
  onChanged: (u: AdminUser) => void;
  onDeleted: (u: AdminUser) => void;
  onNotice: (text: string) => void;
}

export function UserRow({ user, onChanged, onDeleted, onNotice }: Props) {
  const { busy, error, setError, run } = useAction();
  const [resetting, setResetting] = useState(false);

  const toggleStatus = () =>
    run(async () => {
      const status = user.status === 'suspended' ? 'active' : 'suspended';
      onChanged(await api<AdminUser>('PUT', `/api/users/${user.id}/status`, { status }));
      onNotice(`${user.email} is ${status === 'active' ? 'active again' : 'suspended'}.`);
    });
  const remove = () => run(async () => {
    await api('DELETE', `/api/users/${user.id}`);
    onDeleted(user);
  });

  return (
    <li className="row" data-testid="user-row" data-email={user.email}>
      <div className="row-main">
        <div>
          <strong>{user.email}</strong>
          {user.name && <span className="muted"> · {user.name}</span>}
        </div>
        <div className="muted small">
          {user.role} · <span data-testid="user-status">{user.status}</span>
        </div>
        <QuotaBar user={user} />
      </div>
      <div className="row-actions">
        <button type="button" className="secondary" disabled={busy} onClick={() => void toggleStatus()}>
          {user.status === 'suspended' ? 'Activate' : 'Suspend'}
        </button>
        {/* while the form is open the toggle reads "Cancel password reset": a button named
            "Reset password" beside "Set password" would make a by-name lookup of either ambiguous */}
        <button type="button" className="secondary" aria-expanded={resetting} onClick={() => setResetting((r) => !r)}>
          {resetting ? 'Cancel password reset' : 'Reset password'}
        </button>
        <ConfirmDelete subject={user.email} consequence={user.mailbox ? 'its mailbox with every message' : undefined} onConfirm={remove} />
      </div>
      {resetting && (
        <ResetPasswordForm
          user={user}
          onDone={() => {
            setResetting(false);
            onNotice(`Password set for ${user.email}. Their other sessions were signed out.`);
          }}
        />
      )}
      <ErrorBanner error={error} onDismiss={() => setError(null)} />
    </li>
  );
}

function QuotaBar({ user }: { user: AdminUser }) {
  if (!user.mailbox) return <div className="muted small">No mailbox</div>;
  const quota = user.mailbox.quota_mb * BYTES_PER_MB;
  const used = user.mailbox.used_bytes;
  const percent = quota > 0 ? Math.min(100, Math.round((used / quota) * 100)) : 0;
  const text = `${formatBytes(used)} of ${formatBytes(quota)} used`;
  return (
    <div className="quota">
      <div
        className={`quota-bar${percent >= 90 ? ' quota-high' : ''}`}
        role="progressbar"
        aria-label={`Quota used by ${user.email}`}
        aria-valuemin={0}
        aria-valuemax={100}
        aria-valuenow={percent}
        aria-valuetext={text}
      >
        <span style={{ width: `${percent}%` }} />
      </div>
      <span className="muted small">{text}</span>
    </div>
  );
}

function ResetPasswordForm({ user, onDone }: { user: AdminUser; onDone: () => void }) {
  const id = useId();
  const [password, setPassword] = useState('');
  const { busy, error, setError, run } = useAction();

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    await run(async () => {
      await api('PUT', `/api/users/${user.id}/password`, { password });
      onDone();
    });
  };

  return (
    <form className="inline-form reset" aria-label={`Reset password for ${user.email}`} onSubmit={(e) => void submit(e)}>
      <div className="field">
        <label htmlFor={id}>New password for {user.email}</label>
        <input id={id} type="password" value={password} onChange={(e) => setPassword(e.target.value)} required autoComplete="new-password" autoFocus />
      </div>
      <button type="submit" disabled={busy}>
        Set password
      </button>
      <ErrorBanner error={error} onDismiss={() => setError(null)} />
    </form>
  );
}
