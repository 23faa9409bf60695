/**
 * "Outgoing SMTP server": the user's own relay (GET/POST/DELETE /api/smtp/settings, POST
 * /api/smtp/test). The stored password is never sent back, so the Password field is never
 * pre-filled; its placeholder says when one is stored. The API needs the password again for a
 * test or a save, which the page says before sending rather than after a 400. With no settings
 * of their own the user's mail takes the server's default route (isGlobal).
 */
import { useCallback, useEffect, useState, type FormEvent } from 'react';
import { api } from '../api';
import { ErrorBanner, Loading, Notice, useAction } from '../ui';

interface SmtpSettings {
  host: string | null;
  port: number | null;
  secure: boolean | null;
  user: string | null;
  hasPassword: boolean;
  isGlobal: boolean;
}

type Security = 'auto' | 'tls' | 'starttls';
type TestResult = { success: true; message: string } | { success: false; error: string };

interface FormValues {
  host: string;
  port: string;
  security: Security;
  user: string;
  pass: string;
}

const BLANK: FormValues = { host: '', port: '587', security: 'auto', user: '', pass: '' };

function formFrom(s: SmtpSettings): FormValues {
  if (s.isGlobal) return BLANK;
  return { host: s.host ?? '', port: String(s.port ?? 587), security: s.secure === null ? 'auto' : s.secure ? 'tls' : 'starttls', user: s.user ?? '', pass: '' };
}

export function SmtpSettingsForm() {
  const [stored, setStored] = useState<SmtpSettings | null>(null);
  const [form, setForm] = useState<FormValues>(BLANK);
  const { busy, error, setError, run: runAction } = useAction();
  const [notice, setNotice] = useState('');

  const load = useCallback(async () => {
    const s = await api<SmtpSettings>('GET', '/api/smtp/settings');
    setStored(s);
    setForm(formFrom(s));
  }, []);

  useEffect(() => {
    load().catch((err: unknown) => setError(err));
  }, [load, setError]);

  const set = (key: keyof FormValues) => (e: { target: { value: string } }) => setForm((f) => ({ ...f, [key]: e.target.value }));

  /** Runs one action with the busy flag, showing its message or its error. */
  const run = (action: () => Promise<string>) => {
    setNotice('');
    return runAction(async () => setNotice(await action()));
  };

  const body = () => {
    if (form.pass === '') {
      throw new Error(stored?.hasPassword ? 'Enter the password again: the stored one is never sent back, and testing or saving needs it.' : 'Enter the password of your SMTP account.');
    }
    const b: Record<string, unknown> = { host: form.host.trim(), port: Number(form.port), user: form.user, pass: form.pass };
    if (form.security !== 'auto') b.secure = form.security === 'tls';
    return b;
  };

  const test = () =>
    run(async () => {
      const result = await api<TestResult>('POST', '/api/smtp/test', body());
      if (!result.success) throw new Error(result.error);
      return result.message;
    });
  const save = (e: FormEvent) => {
    e.preventDefault();
    void run(async () => {
      const { message } = await api<{ message: string }>('POST', '/api/smtp/settings', body());
      await load();
      return message;
    });
  };
  const remove = () =>
    run(async () => {
      const { message } = await api<{ message: string }>('DELETE', '/api/smtp/settings');
      await load();
      return message;
    });

  return (
    <section className="settings-section" aria-labelledby="smtp-heading">
      <h2 id="smtp-heading">Outgoing SMTP server</h2>
      <p className="muted">Send your mail through your own provider's SMTP server instead of this server's route.</p>
      {stored === null ? (
        !error && <Loading label="Loading your SMTP settings…" />
      ) : (
        <p data-testid="smtp-route" className="route-line">
          {stored.isGlobal
            ? `Using the server's default route${stored.host ? ` (${stored.host}:${stored.port ?? ''})` : ''}.`
            : `Using your own server ${stored.host ?? ''}:${stored.port ?? ''}.`}
        </p>
      )}
      <form aria-label="Outgoing SMTP server" noValidate onSubmit={save} className="smtp-form">
        <div className="field">
          <label htmlFor="smtp-host">Host</label>
          <input id="smtp-host" value={form.host} onChange={set('host')} placeholder="smtp.example.com" autoComplete="off" spellCheck={false} />
        </div>
        <div className="field">
          <label htmlFor="smtp-port">Port</label>
          <input id="smtp-port" type="number" inputMode="numeric" min={1} max={65535} value={form.port} onChange={set('port')} />
        </div>
        <div className="field">
          <label htmlFor="smtp-security">Security</label>
          <select id="smtp-security" value={form.security} onChange={set('security')}>
            <option value="auto">Automatic (TLS on port 465, otherwise STARTTLS)</option>
            <option value="tls">TLS from the start (SMTPS)</option>
            <option value="starttls">STARTTLS</option>
          </select>
        </div>
        <div className="field">
          <label htmlFor="smtp-user">Username</label>
          <input id="smtp-user" value={form.user} onChange={set('user')} autoComplete="off" spellCheck={false} />
        </div>
        <div className="field">
          <label htmlFor="smtp-pass">Password</label>
          <input
            id="smtp-pass"
            type="password"
            value={form.pass}
            onChange={set('pass')}
            autoComplete="new-password"
            placeholder={stored?.hasPassword ? 'A password is stored' : ''}
            aria-describedby={stored?.hasPassword ? 'smtp-pass-hint' : undefined}
          />
          {stored?.hasPassword && (
            <small id="smtp-pass-hint" className="muted">
              It is never shown; type it again to test or save.
            </small>
          )}
        </div>
        <div className="form-actions">
          <button type="button" className="secondary" disabled={busy} onClick={() => void test()}>
            Test connection
          </button>
          <button type="submit" disabled={busy}>
            Save
          </button>
          <button type="button" className="secondary" disabled={busy || !stored || stored.isGlobal} onClick={() => void remove()}>
            Remove
          </button>
        </div>
      </form>
      <div aria-live="polite">{busy && <span className="muted">Working…</span>}</div>
      <ErrorBanner error={error} onDismiss={() => setError(null)} />
      {notice && <Notice>{notice}</Notice>}
    </section>
  );
}
