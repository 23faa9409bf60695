/**
 * An in-page "are you sure?" for destructive actions: the first button reveals a short question
 * with "Yes, delete" and "Cancel" (the webmail never opens browser dialogs, which tests and
 * screen readers handle badly). Used by the Domains, Users and Providers admin pages.
 */
import { useState } from 'react';
import { useAction } from '../ui';

interface Props {
  /** What is deleted, for the question and the button's accessible name ("Delete example.com"). */
  subject: string;
  /** What else goes with it, e.g. "its mailbox and every message". */
  consequence?: string;
  onConfirm: () => Promise<unknown>;
}

export function ConfirmDelete({ subject, consequence, onConfirm }: Props) {
  const [asking, setAsking] = useState(false);
  const { busy, run } = useAction();

  if (!asking) {
    return (
      <button type="button" className="secondary danger-text" aria-label={`Delete ${subject}`} onClick={() => setAsking(true)}>
        Delete
      </button>
    );
  }
  const confirm = async () => {
    await run(onConfirm);
    setAsking(false);
  };
  return (
    <span role="group" aria-label={`Confirm deleting ${subject}`} className="confirm">
      <span>
        Delete {subject}
        {consequence ? ` and ${consequence}` : ''}? This cannot be undone.
      </span>
      <button type="button" className="danger" disabled={busy} onClick={() => void confirm()}>
        Yes, delete
      </button>
      <button type="button" className="secondary" disabled={busy} onClick={() => setAsking(false)}>
        Cancel
      </button>
    </span>
  );
}
