/**
 * Above the message list: its heading ("Search results" during a search, else the folder's
 * name) and the folder's own actions: "Empty Trash"/"Empty Junk" with an in-page confirmation
 * (no browser dialogs), "Remove folder" for a user folder, "Clear search".
 */
import { useEffect, useState } from 'react';
import { api } from '../api';
import { ErrorBanner, useAction } from '../ui';
import { displayName, type Folder } from './types';

interface Props {
  heading: string;
  searching: boolean;
  folder: Folder | undefined;
  onEmptied: () => void;
  onDeleted: () => void;
  onClearSearch: () => void;
}

export function ListHeader({ heading, searching, folder, onEmptied, onDeleted, onClearSearch }: Props) {
  const [confirming, setConfirming] = useState(false);
  const { busy, error, setError, run } = useAction();
  const folderId = folder?.id;

  useEffect(() => {
    setConfirming(false);
    setError(null);
  }, [folderId, searching, setError]);

  const emptiable = !searching && (folder?.special_use === 'trash' || folder?.special_use === 'junk');
  const name = folder ? displayName(folder) : '';

  return (
    <div className="list-header">
      <div className="list-header-row">
        <h1 id="list-heading">{heading}</h1>
        {searching && (
          <button type="button" className="link" onClick={onClearSearch}>
            Clear search
          </button>
        )}
        {emptiable && folder && !confirming && (
          <button type="button" className="secondary" onClick={() => setConfirming(true)}>
            Empty {name}
          </button>
        )}
        {!searching && folder && !folder.special_use && (
          <button type="button" className="link" disabled={busy} onClick={() => void run(async () => {
            await api('DELETE', `/api/webmail/mailboxes/${folder.id}`);
            onDeleted();
          })}>
            Remove folder
          </button>
        )}
      </div>
      {confirming && folder && (
        <div className="confirm" role="group" aria-label={`Empty ${name}`}>
          <span>
            {folder.total === 1 ? `Delete the message in ${name} forever?` : `Delete all ${folder.total} messages in ${name} forever?`} This cannot be undone.
          </span>
          <button
            type="button"
            className="danger"
            disabled={busy}
            onClick={() =>
              void run(async () => {
                await api('DELETE', `/api/webmail/mailboxes/${folder.id}/messages`);
                setConfirming(false);
                onEmptied();
              })
            }
          >
            Delete all forever
          </button>
          <button type="button" className="secondary" onClick={() => setConfirming(false)}>
            Cancel
          </button>
        </div>
      )}
      <ErrorBanner error={error} onDismiss={() => setError(null)} />
    </div>
  );
}
