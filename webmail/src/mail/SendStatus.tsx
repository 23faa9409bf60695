/**
 * After Send: each recipient with its delivery status, first from the 202 answer, then from
 * GET /api/mails/:id a few times (a local delivery settles in a second or two, a remote one may
 * stay queued or deferred; the reader can see the rest later in Sent).
 */
import { useEffect, useState } from 'react';
import { api } from '../api';
import type { MailStatus, Queued } from './types';

const POLL_MS = 1500;
const POLLS = 8;
const SETTLED = new Set(['sent', 'bounced', 'failed', 'delivered']);

export function SendStatus({ queued }: { queued: Queued }) {
  const [recipients, setRecipients] = useState<MailStatus['recipients']>(queued.recipients.map((r) => ({ ...r, last_reply: null, attempts: 0 })));
  const [polling, setPolling] = useState(true);

  useEffect(() => {
    let left = POLLS;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let live = true;
    const poll = async () => {
      try {
        const mail = await api<MailStatus>('GET', `/api/mails/${queued.id}`);
        if (!live) return;
        if (mail.recipients.length) setRecipients(mail.recipients);
        if (mail.recipients.length && mail.recipients.every((r) => SETTLED.has(r.status))) left = 0;
      } catch {
        // the next poll tries again; the 202 statuses stay on screen meanwhile
      }
      left -= 1;
      if (live && left > 0) timer = setTimeout(() => void poll(), POLL_MS);
      else if (live) setPolling(false);
    };
    timer = setTimeout(() => void poll(), 500);
    return () => {
      live = false;
      clearTimeout(timer);
    };
  }, [queued.id]);

  return (
    <div data-testid="send-status" className="send-status" aria-live="polite">
      <h2>Delivery status</h2>
      <ul>
        {recipients.map((r) => (
          <li key={r.address}>
            <span className="send-address">{r.address}</span>: <strong className={`send-${r.status}`}>{r.status}</strong>
            {r.last_reply && <span className="small muted"> ({r.last_reply})</span>}
          </li>
        ))}
      </ul>
      <p className="small muted">{polling ? 'Checking delivery…' : 'Later changes show in the Sent folder.'}</p>
    </div>
  );
}
