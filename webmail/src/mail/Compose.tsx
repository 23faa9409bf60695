/**
 * The compose form (new message, reply, reply all, forward, a reopened draft). Drafts save
 * themselves ~2 s after typing stops through POST /api/webmail/messages with draft: true and
 * `replace_draft` naming the previous copy, so exactly one draft exists; attachments upload with
 * progress to that draft (POST /api/webmail/messages/:id/attachments, which answers with the
 * replacing draft's new id). Every change to the draft runs through one queue, so a save, an
 * upload and the send never race over which copy is current. Send hands the form to SendStatus.
 */
import { useEffect, useRef, useState } from 'react';
import { api, upload } from '../api';
import { ErrorBanner, errorText, formatBytes } from '../ui';
import { splitAddresses, type ComposeInit } from './compose-text';
import { PaperclipIcon } from './icons';
import { SendStatus } from './SendStatus';
import type { MessageDetail, Queued, SavedDraft } from './types';

const AUTOSAVE_MS = 2000;
const PROGRESS_LINGER_MS = 600;

type Attached = ComposeInit['attachments'][number];

interface Props {
  init: ComposeInit;
  onClose: () => void;
  /** The Drafts (or Sent) folder changed: lists and counts should refresh. */
  onStored: () => void;
}

export function Compose({ init, onClose, onStored }: Props) {
  const [to, setTo] = useState(init.to);
  const [cc, setCc] = useState(init.cc);
  const [bcc, setBcc] = useState(init.bcc);
  const [subject, setSubject] = useState(init.subject);
  const [text, setText] = useState(init.text);
  const [attachments, setAttachments] = useState<Attached[]>(init.attachments);
  const [saveStatus, setSaveStatus] = useState('');
  const [progress, setProgress] = useState<number | null>(null);
  const [sending, setSending] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [sent, setSent] = useState<Queued | null>(null);

  // the queue's tasks read the latest values, not the ones of the render that scheduled them
  const fields = useRef({ to, cc, bcc, subject, text, attachments });
  fields.current = { to, cc, bcc, subject, text, attachments };
  const draftId = useRef<string | null>(init.draftId ?? null);
  const dirty = useRef(false);
  const queue = useRef<Promise<unknown>>(Promise.resolve());
  const timer = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);
  const first = useRef(true);
  const done = useRef(false);

  function enqueue<T>(task: () => Promise<T>): Promise<T> {
    const next = queue.current.then(task, task);
    queue.current = next.catch(() => undefined);
    return next;
  }

  function payload() {
    const f = fields.current;
    return {
      to: splitAddresses(f.to),
      cc: splitAddresses(f.cc),
      bcc: splitAddresses(f.bcc),
      subject: f.subject,
      text: f.text,
      ...(init.inReplyTo ? { in_reply_to: init.inReplyTo } : {}),
      ...(f.attachments.length ? { attachment_ids: f.attachments.map((a) => a.id) } : {}),
      ...(draftId.current ? { replace_draft: draftId.current } : {}),
    };
  }

  function isBlank(): boolean {
    const f = fields.current;
    return !f.to.trim() && !f.cc.trim() && !f.bcc.trim() && !f.subject.trim() && !f.text.trim() && f.attachments.length === 0;
  }

  /** Stores the draft now (inside the queue). `force`: even an empty one, for an upload to attach to. */
  async function saveNow(force = false): Promise<void> {
    if (done.current || (!dirty.current && !force)) return;
    if (!force && isBlank() && !draftId.current) {
      dirty.current = false;
      return;
    }
    dirty.current = false;
    setSaveStatus('Saving draft…');
    try {
      const saved = await api<SavedDraft>('POST', '/api/webmail/messages', { ...payload(), draft: true });
      draftId.current = saved.stored_message_id;
      setAttachments(saved.attachments.map((a) => ({ id: a.id, filename: a.filename, size: a.size })));
      setSaveStatus('Draft saved');
      onStored();
    } catch (err) {
      dirty.current = true;
      setSaveStatus(`Draft not saved: ${errorText(err)}`);
      if (force) throw err;
    }
  }

  const scheduleSave = () => {
    dirty.current = true;
    clearTimeout(timer.current);
    timer.current = setTimeout(() => void enqueue(() => saveNow()), AUTOSAVE_MS);
  };

  useEffect(() => {
    if (first.current) {
      first.current = false;
      return;
    }
    scheduleSave();
  }, [to, cc, bcc, subject, text]);

  // closing the form keeps what was typed: a pending save runs at once
  useEffect(
    () => () => {
      clearTimeout(timer.current);
      if (dirty.current && !done.current) void enqueue(() => saveNow());
    },
    [],
  );

  function attach(files: FileList | null) {
    const list = Array.from(files ?? []);
    if (list.length === 0) return;
    clearTimeout(timer.current);
    setError(null);
    void enqueue(async () => {
      try {
        if (!draftId.current || dirty.current) await saveNow(true);
        const form = new FormData();
        for (const file of list) form.append('attachments', file, file.name);
        setProgress(0);
        const draft = await upload<MessageDetail>(`/api/webmail/messages/${draftId.current}/attachments`, form, setProgress);
        draftId.current = draft.id;
        setAttachments(draft.attachments.map((a) => ({ id: a.id, filename: a.filename, size: a.size })));
        setSaveStatus('Draft saved');
        onStored();
        // a small file finishes at once: the full bar stays a moment so the upload is seen to end
        setProgress(1);
        await new Promise((resolve) => setTimeout(resolve, PROGRESS_LINGER_MS));
      } catch (err) {
        setError(err);
      } finally {
        setProgress(null);
      }
    });
  }

  function detach(id: string) {
    setAttachments((list) => list.filter((a) => a.id !== id));
    fields.current = { ...fields.current, attachments: fields.current.attachments.filter((a) => a.id !== id) };
    dirty.current = true;
    clearTimeout(timer.current);
    void enqueue(() => saveNow(true).catch((err: unknown) => setError(err)));
  }

  function send() {
    clearTimeout(timer.current);
    setError(null);
    setSending(true);
    void enqueue(async () => {
      try {
        const queued = await api<Queued>('POST', '/api/webmail/messages', payload());
        done.current = true;
        dirty.current = false;
        setSent(queued);
        onStored();
      } catch (err) {
        setError(err);
      } finally {
        setSending(false);
      }
    });
  }

  function discard() {
    clearTimeout(timer.current);
    done.current = true;
    dirty.current = false;
    void enqueue(async () => {
      const id = draftId.current;
      if (!id) return;
      try {
        // the first DELETE moves the copy to Trash, the second (in Trash) deletes it for good
        await api('DELETE', `/api/webmail/messages/${id}`);
        await api('DELETE', `/api/webmail/messages/${id}`);
      } catch {
        // already gone, or kept in Trash: either way it is out of Drafts
      }
      onStored();
    });
    onClose();
  }

  if (sent) {
    return (
      <section className="compose compose-sent" aria-label="Sent">
        <SendStatus queued={sent} />
        <button type="button" onClick={onClose}>
          Close
        </button>
      </section>
    );
  }

  return (
    <form aria-label="Compose" className="compose" onSubmit={(e) => e.preventDefault()}>
      <h2 className="compose-title">{init.inReplyTo ? 'Reply' : init.draftId ? 'Draft' : 'New message'}</h2>
      <ErrorBanner error={error} onDismiss={() => setError(null)} />
      <div className="compose-field">
        <label htmlFor="compose-to">To</label>
        <input id="compose-to" value={to} onChange={(e) => setTo(e.target.value)} autoComplete="email" autoFocus={!init.to} />
      </div>
      <div className="compose-field">
        <label htmlFor="compose-cc">Cc</label>
        <input id="compose-cc" value={cc} onChange={(e) => setCc(e.target.value)} autoComplete="email" />
      </div>
      <div className="compose-field">
        <label htmlFor="compose-bcc">Bcc</label>
        <input id="compose-bcc" value={bcc} onChange={(e) => setBcc(e.target.value)} autoComplete="email" />
      </div>
      <div className="compose-field">
        <label htmlFor="compose-subject">Subject</label>
        <input id="compose-subject" value={subject} onChange={(e) => setSubject(e.target.value)} maxLength={998} />
      </div>
      <label htmlFor="compose-text" className="compose-text-label">
        Message
      </label>
      <textarea id="compose-text" value={text} onChange={(e) => setText(e.target.value)} rows={14} autoFocus={!!init.to} />
      <div className="compose-attach">
        <label htmlFor="compose-files">Attach files</label>
        <input
          id="compose-files"
          type="file"
          multiple
          disabled={progress !== null}
          onChange={(e) => {
            attach(e.target.files);
            e.target.value = '';
          }}
        />
        {progress !== null && (
          <div className="upload-progress">
            <progress aria-label="Upload progress" max={1} value={progress} /> <span className="small muted">{Math.round(progress * 100)}%</span>
          </div>
        )}
        {attachments.length > 0 && (
          <ul className="compose-attachments" aria-label="Attached files">
            {attachments.map((a) => {
              const name = a.filename ?? 'attachment';
              return (
                <li key={a.id}>
                  <PaperclipIcon /> {name} <span className="small muted">{formatBytes(a.size)}</span>{' '}
                  <button type="button" className="link" onClick={() => detach(a.id)} disabled={progress !== null}>
                    Remove {name}
                  </button>
                </li>
              );
            })}
          </ul>
        )}
      </div>
      <div className="compose-actions">
        <button type="button" onClick={send} disabled={sending || progress !== null}>
          {sending ? 'Sending…' : 'Send'}
        </button>
        <button type="button" className="secondary" onClick={discard}>
          Discard
        </button>
        <button type="button" className="secondary" onClick={onClose}>
          Close
        </button>
        <p role="status" aria-live="polite" className="save-status small muted">
          {saveStatus}
        </p>
      </div>
    </form>
  );
}
