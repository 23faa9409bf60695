/**
 * The shell: the sign-in gate, the top bar (Mail, Settings, Admin for owners and admins, the
 * signed-in address, Log out) and the route table. Routes:
 *   /login, /signup
 *   /mail/:folder/:id?      folder = INBOX, Sent, Drafts, Trash, Junk or a folder id
 *   /settings
 *   /admin/domains, /admin/users, /admin/providers, /admin/audit
 */
import { AuditPage } from './admin/AuditPage';
import { DomainsPage } from './admin/DomainsPage';
import { ProvidersPage } from './admin/ProvidersPage';
import { UsersPage } from './admin/UsersPage';
import { LoginPage } from './auth/LoginPage';
import { SignupPage } from './auth/SignupPage';
import { MailPage } from './mail/MailPage';
import { Link, match, navigate, useLocation } from './router';
import { useSession } from './session';
import { SettingsPage } from './settings/SettingsPage';
import { Loading } from './ui';

export function App() {
  const { me, logout } = useSession();
  const { path } = useLocation();

  if (me === undefined) return <Loading label="Signing you in…" />;
  if (me === null) {
    if (path === '/signup') return <SignupPage />;
    if (path !== '/login') queueMicrotask(() => navigate('/login', { replace: true }));
    return <LoginPage />;
  }
  if (path === '/' || path === '/login' || path === '/signup') {
    queueMicrotask(() => navigate('/mail/INBOX', { replace: true }));
    return <Loading />;
  }

  const isAdmin = me.user.role === 'owner' || me.user.role === 'admin';
  const section = path.split('/')[1] ?? '';
  return (
    <div className="app">
      <header className="topbar">
        <a className="skip-link" href="#main">
          Skip to content
        </a>
        <nav aria-label="Sections" className="sections">
          <Link href="/mail/INBOX" aria-current={section === 'mail' ? 'page' : undefined}>
            Mail
          </Link>
          <Link href="/settings" aria-current={section === 'settings' ? 'page' : undefined}>
            Settings
          </Link>
          {isAdmin && (
            <Link href="/admin/domains" aria-current={section === 'admin' ? 'page' : undefined}>
              Admin
            </Link>
          )}
        </nav>
        <span className="whoami" title={me.tenant.name}>
          {me.user.email}
        </span>
        <button type="button" className="secondary" onClick={() => void logout()}>
          Log out
        </button>
      </header>
      <main id="main" className="content">
        <Routes path={path} isAdmin={isAdmin} />
      </main>
    </div>
  );
}

function Routes({ path, isAdmin }: { path: string; isAdmin: boolean }) {
  const mail = match('/mail/:folder/:id?', path);
  if (mail) return <MailPage folder={mail.folder!} messageId={mail.id ?? null} />;
  if (path === '/settings') return <SettingsPage />;
  if (path.startsWith('/admin')) {
    if (!isAdmin) return <p className="empty">Only owners and admins manage the organisation.</p>;
    return (
      <div className="admin">
        <nav aria-label="Admin" className="admin-nav">
          <Link href="/admin/domains">Domains</Link>
          <Link href="/admin/users">Users</Link>
          <Link href="/admin/providers">Providers</Link>
          <Link href="/admin/audit">Audit log</Link>
        </nav>
        <section className="admin-body">
          {path === '/admin/domains' && <DomainsPage />}
          {path === '/admin/users' && <UsersPage />}
          {path === '/admin/providers' && <ProvidersPage />}
          {path === '/admin/audit' && <AuditPage />}
        </section>
      </div>
    );
  }
  return <p className="empty">Nothing here. <Link href="/mail/INBOX">Go to your inbox</Link>.</p>;
}
