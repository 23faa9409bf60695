/**
 * "Change password": POST /api/auth/password with the current and the new password. The server
 * revokes every other session and answers with a fresh token pair, which replaces ours
 * (adoptTokens) so this tab stays signed in. A wrong current password is the API's 400, shown
 * as it comes. The current password is emptied after every attempt, both once they succeed.
 */
import { useState, type FormEvent } from 'react';
import { api, type TokenPair } from '../api';
import { useSession } from '../session';
import { ErrorBanner, Notice, useAction } from '../ui';

export function PasswordForm() {
  const { adoptTokens } = useSession();
  const [current, setCurrent] = useState('');
  const [next, setNext] = useState('');
  const { busy, error, setError, run } = useAction();
  const [done, setDone] = useState(false);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setDone(false);
    await run(async () => {
      adoptTokens(await api<TokenPair>('POST', '/api/auth/password', { current_password: current, password: next }));
      setDone(true);
      setNext('');
    });
    setCurrent('');
  };

  return (
    <section className="settings-section" aria-labelledby="password-heading">
      <h2 id="password-heading">Change password</h2>
      <form aria-label="Change password" noValidate onSubmit={(e) => void submit(e)}>
        <label htmlFor="current-password">Current password</label>
        <input id="current-password" type="password" autoComplete="current-password" value={current} onChange={(e) => setCurrent(e.target.value)} />
        <label htmlFor="new-password">New password</label>
        <input id="new-password" type="password" autoComplete="new-password" value={next} onChange={(e) => setNext(e.target.value)} aria-describedby="new-password-hint" />
        <small id="new-password-hint" className="muted">
          At least 8 characters. Your other sessions are signed out.
        </small>
        <div className="form-actions">
          <button type="submit" disabled={busy}>
            Change password
          </button>
        </div>
      </form>
      <ErrorBanner error={error} onDismiss={() => setError(null)} />
      {done && <Notice>Password changed</Notice>}
    </section>
  );
}
