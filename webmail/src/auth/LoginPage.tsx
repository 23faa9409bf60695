/**
 * /login: email and password against POST /api/auth/login (session.login). The API's error text
 * (wrong password, locked out, throttled) is shown as is in an alert; on success the shell sends
 * the user to their inbox.
 */
import { useState, type FormEvent } from 'react';
import { Link, navigate } from '../router';
import { useSession } from '../session';
import { ErrorBanner, useAction } from '../ui';
import './auth.css';

export function LoginPage() {
  const { login } = useSession();
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  // on success the page is left, so the button stays disabled until then
  const { busy, error, run } = useAction({ keepBusyOnSuccess: true });

  async function submit(e: FormEvent) {
    e.preventDefault();
    await run(async () => {
      await login(email.trim(), password);
      navigate('/mail/INBOX', { replace: true });
    });
  }

  return (
    <main className="auth-page">
      <form className="auth-card" onSubmit={(e) => void submit(e)} aria-labelledby="login-heading">
        <h1 id="login-heading">Log in</h1>
        <ErrorBanner error={error} />
        <label htmlFor="login-email">Email</label>
        <input id="login-email" type="email" autoComplete="username" required value={email} onChange={(e) => setEmail(e.target.value)} autoFocus />
        <label htmlFor="login-password">Password</label>
        <input id="login-password" type="password" autoComplete="current-password" required value={password} onChange={(e) => setPassword(e.target.value)} />
        <button type="submit" disabled={busy}>
          {busy ? 'Logging in…' : 'Log in'}
        </button>
        <p className="auth-alt">
          New here? <Link href="/signup">Create an account</Link>
        </p>
      </form>
    </main>
  );
}
