/**
 * The folder column: one link per folder (name plus ", N unread" in its accessible name), the
 * "New folder" form, and the quota line. On a phone it is hidden behind the "Folders" button of
 * the mail toolbar and closes again once a folder is chosen.
 */
import { useState, type FormEvent } from 'react';
import { api } from '../api';
import { Link } from '../router';
import { ErrorBanner, formatBytes, useAction } from '../ui';
import { displayName, folderParam, type Folder, type MailboxesResponse } from './types';

interface Props {
  folders: Folder[] | null;
  mailbox: MailboxesResponse['mailbox'] | null;
  error: unknown;
  current: Folder | undefined;
  onChosen: () => void;
  onCreated: () => Promise<void>;
}

export function FolderNav({ folders, mailbox, error, current, onChosen, onCreated }: Props) {
  return (
    <>
      <nav aria-label="Folders" className="folder-nav">
        <ErrorBanner error={error} />
        {folders === null && !error && <p className="muted small">Loading folders…</p>}
        <ul>
          {(folders ?? []).map((f) => {
            const name = displayName(f);
            const label = f.unread > 0 ? `${name}, ${f.unread} unread` : name;
            return (
              <li key={f.id}>
                <Link href={`/mail/${encodeURIComponent(folderParam(f))}`} aria-label={label} aria-current={current?.id === f.id ? 'page' : undefined} onClick={onChosen} className="folder-link">
                  <span className="folder-name">{name}</span>
                  {f.unread > 0 && (
                    <span className="folder-count" aria-hidden="true">
                      {f.unread}
                    </span>
                  )}
                </Link>
              </li>
            );
          })}
        </ul>
      </nav>
      <NewFolder onCreated={onCreated} />
      {mailbox && (
        <p className="quota small muted">
          {formatBytes(mailbox.used_bytes)} of {formatBytes(mailbox.quota_bytes)} used
        </p>
      )}
    </>
  );
}

function NewFolder({ onCreated }: { onCreated: () => Promise<void> }) {
  const [open, setOpen] = useState(false);
  const [name, setName] = useState('');
  const { busy, error, run } = useAction();

  async function submit(e: FormEvent) {
    e.preventDefault();
    await run(async () => {
      await api('POST', '/api/webmail/mailboxes', { name: name.trim() });
      await onCreated();
      setName('');
      setOpen(false);
    });
  }

  if (!open) {
    return (
      <button type="button" className="secondary new-folder" onClick={() => setOpen(true)}>
        New folder
      </button>
    );
  }
  return (
    <form className="new-folder-form" onSubmit={(e) => void submit(e)} aria-label="New folder">
      <label htmlFor="new-folder-name">Folder name</label>
      <input id="new-folder-name" value={name} onChange={(e) => setName(e.target.value)} maxLength={100} required autoFocus />
      <ErrorBanner error={error} />
      <div className="row-buttons">
        <button type="submit" disabled={busy}>
          Create folder
        </button>
        <button type="button" className="secondary" onClick={() => setOpen(false)}>
          Cancel
        </button>
      </div>
    </form>
  );
}
