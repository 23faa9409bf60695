/**
 * /signup: a new organisation with its owner (POST /api/auth/signup via session.signup). The
 * server's password and address rules are the ones that count; its error text is shown as is.
 */
import { useState, type FormEvent } from 'react';
import { Link, navigate } from '../router';
import { useSession } from '../session';
import { ErrorBanner, useAction } from '../ui';
import './auth.css';

export function SignupPage() {
  const { signup } = useSession();
  const [company, setCompany] = useState('');
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  // on success the page is left, so the button stays disabled until then
  const { busy, error, run } = useAction({ keepBusyOnSuccess: true });

  async function submit(e: FormEvent) {
    e.preventDefault();
    await run(async () => {
      await signup(company.trim(), email.trim(), password);
      navigate('/mail/INBOX', { replace: true });
    });
  }

  return (
    <main className="auth-page">
      <form className="auth-card" onSubmit={(e) => void submit(e)} aria-labelledby="signup-heading">
        <h1 id="signup-heading">Create an account</h1>
        <ErrorBanner error={error} />
        <label htmlFor="signup-company">Organisation name</label>
        <input id="signup-company" autoComplete="organization" required value={company} onChange={(e) => setCompany(e.target.value)} autoFocus />
        <label htmlFor="signup-email">Email</label>
        <input id="signup-email" type="email" autoComplete="username" required value={email} onChange={(e) => setEmail(e.target.value)} />
        <label htmlFor="signup-password">Password</label>
        <input id="signup-password" type="password" autoComplete="new-password" required value={password} onChange={(e) => setPassword(e.target.value)} />
        <button type="submit" disabled={busy}>
          {busy ? 'Creating your account…' : 'Sign up'}
        </button>
        <p className="auth-alt">
          Already have an account? <Link href="/login">Log in</Link>
        </p>
      </form>
    </main>
  );
}
