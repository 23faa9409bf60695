/**
 * The folder list with total and unread counts and the mailbox's quota
 * (GET /api/webmail/mailboxes). `reload` is called after anything that moves counts: opening,
 * flagging, moving or deleting a message, and every `mailbox` event from the server.
 */
import { useCallback, useEffect, useRef, useState } from 'react';
import { api } from '../api';
import type { Folder, MailboxesResponse } from './types';

export interface FoldersState {
  folders: Folder[] | null;
  mailbox: MailboxesResponse['mailbox'] | null;
  error: unknown;
  reload: () => Promise<void>;
  /** Applies a local change at once (e.g. one fewer unread) until the next reload confirms it. */
  adjustUnread: (folderId: string, delta: number) => void;
}

export function useFolders(): FoldersState {
  const [data, setData] = useState<MailboxesResponse | null>(null);
  const [error, setError] = useState<unknown>(null);
  const generation = useRef(0);

  const reload = useCallback(async () => {
    const mine = ++generation.current;
    try {
      const res = await api<MailboxesResponse>('GET', '/api/webmail/mailboxes');
      if (mine !== generation.current) return;
      setData(res);
      setError(null);
    } catch (err) {
      if (mine === generation.current) setError(err);
    }
  }, []);

  useEffect(() => {
    void reload();
  }, [reload]);

  const adjustUnread = useCallback((folderId: string, delta: number) => {
    setData((d) => d && { ...d, data: d.data.map((f) => (f.id === folderId ? { ...f, unread: Math.max(0, f.unread + delta) } : f)) });
  }, []);

  return { folders: data?.data ?? null, mailbox: data?.mailbox ?? null, error, reload, adjustUnread };
}
