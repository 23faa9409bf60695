/**
 * The reading pane: `<article aria-label="Message">` with the subject as its heading, sender and
 * recipients, the SPF/DKIM/DMARC verdict, the toolbar (reply, reply all, forward, read/unread,
 * flag, move, delete, download original), the attachments and the body. Actions are the Mail
 * page's (it also drives them from the keyboard); this component only shows and asks.
 */
import { download } from '../api';
import { ErrorBanner, formatBytes, formatFullDate, useAction } from '../ui';
import { PaperclipIcon } from './icons';
import { MessageBody } from './MessageBody';
import { displayName, formatAddress, type Folder, type MessageDetail } from './types';

export interface MessageActions {
  reply: (all: boolean) => void;
  forward: () => void;
  editDraft: () => void;
  setSeen: (seen: boolean) => Promise<void>;
  setFlagged: (flagged: boolean) => Promise<void>;
  move: (folderId: string) => Promise<void>;
  remove: () => Promise<void>;
  close: () => void;
}

interface Props {
  message: MessageDetail;
  folders: Folder[];
  actions: MessageActions;
}

export function authSummary(auth: MessageDetail['auth']): string {
  if (!auth) return 'Not authenticated';
  return `SPF ${auth.spf} · DKIM ${auth.dkim} · DMARC ${auth.dmarc}`;
}

function authClass(auth: MessageDetail['auth']): string {
  if (!auth) return 'auth-none';
  const words = [auth.spf, auth.dkim, auth.dmarc];
  if (words.some((w) => w === 'fail' || w === 'softfail' || w === 'permerror')) return 'auth-fail';
  return auth.dmarc === 'pass' ? 'auth-pass' : 'auth-none';
}

export function MessageView({ message: m, folders, actions }: Props) {
  const { busy, error, setError, run } = useAction();
  const current = folders.find((f) => f.id === m.folder_id);

  const save = (path: string, name: string) => void run(() => download(path, name));

  return (
    <article aria-label="Message" className="message-view">
      <div className="message-toolbar" role="toolbar" aria-label="Message actions">
        <button type="button" className="secondary back-button" onClick={actions.close} aria-label="Back to list">
          ←
        </button>
        {m.draft ? (
          <button type="button" onClick={actions.editDraft}>
            Edit draft
          </button>
        ) : (
          <>
            <button type="button" onClick={() => actions.reply(false)}>
              Reply
            </button>
            <button type="button" className="secondary" onClick={() => actions.reply(true)}>
              Reply all
            </button>
          </>
        )}
        <button type="button" className="secondary" onClick={actions.forward}>
          Forward
        </button>
        <button type="button" className="secondary" disabled={busy} onClick={() => void run(() => actions.setSeen(!m.seen))}>
          {m.seen ? 'Mark unread' : 'Mark read'}
        </button>
        <button type="button" className="secondary" disabled={busy} onClick={() => void run(() => actions.setFlagged(!m.flagged))} aria-pressed={m.flagged}>
          {m.flagged ? 'Unflag' : 'Flag'}
        </button>
      <select
          aria-label="Move to"
          value=""
          disabled={busy}
          onChange={(e) => {
            const to = e.target.value;
            if (to) void run(() => actions.move(to));
          }}
        >
          <option value="">Move to…</option>
          {folders
            .filter((f) => f.id !== m.folder_id)
            .map((f) => (
              <option key={f.id} value={f.id}>
                {displayName(f)}
              </option>
            ))}
        </select>
        <button type="button" className="danger" disabled={busy} onClick={() => void run(actions.remove)}>
          Delete
        </button>
        <button type="button" className="secondary" onClick={() => save(`/api/webmail/messages/${m.id}/raw`, `${m.id}.eml`)}>
          Download original
        </button>
      </div>
      <ErrorBanner error={error} onDismiss={() => setError(null)} />
      <header className="message-header">
        <h2>{m.subject || '(no subject)'}</h2>
        <dl className="message-meta">
          <dt>From</dt>
          <dd>{formatAddress(m.from)}</dd>
          <dt>To</dt>
          <dd>{m.to.map(formatAddress).join(', ') || '(none)'}</dd>
          {m.cc.length > 0 && (
            <>
              <dt>Cc</dt>
              <dd>{m.cc.map(formatAddress).join(', ')}</dd>
            </>
          )}
          <dt>Date</dt>
          <dd>
            <time dateTime={m.sent_at ?? m.date}>{formatFullDate(m.sent_at ?? m.date)}</time>
          </dd>
          {current && (
            <>
              <dt>Folder</dt>
              <dd>{displayName(current)}</dd>
            </>
          )}
        </dl>
        <p data-testid="auth-badge" className={`auth-badge ${authClass(m.auth)}`} title="Sender authentication (SPF, DKIM, DMARC)">
          {authSummary(m.auth)}
        </p>
      </header>
      {m.attachments.length > 0 && (
        <ul className="attachment-list" aria-label="Attachments">
          {m.attachments.map((a) => {
            const name = a.filename ?? 'attachment';
            return (
              <li key={a.id}>
                <span className="attachment-name">
                  <PaperclipIcon /> {name}
                </span> <span className="muted small">{formatBytes(a.size)}</span>{' '}
                <button type="button" className="link" onClick={() => save(`/api/webmail/messages/${m.id}/attachments/${a.id}`, name)}>
                  Download {name}
                </button>
              </li>
            );
          })}
        </ul>
      )}
      <div className="message-body">
        <MessageBody key={m.id} message={m} />
      </div>
    </article>
  );
}
