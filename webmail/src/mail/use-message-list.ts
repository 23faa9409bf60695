/**
 * One folder's (or one search's) messages, newest first, fetched 50 at a time with the API's
 * cursor as the reader scrolls. Only loaded pages are kept and rendered, so a 10,000-message
 * folder costs one request up front. `refresh` (on a server event) re-reads the first page and
 * splices it over the head of what is loaded: new mail appears on top, and moved or deleted
 * messages in that window vanish, without losing the pages scrolled to.
 */
import { useCallback, useEffect, useRef, useState } from 'react';
import { api, type Page } from '../api';
import type { Summary } from './types';

export const PAGE_SIZE = 50;

export interface MessageListState {
  items: Summary[];
  /** True until the first page of the current folder/search has arrived. */
  loading: boolean;
  loadingMore: boolean;
  error: unknown;
  hasMore: boolean;
  loadMore: () => void;
  refresh: () => Promise<void>;
  update: (id: string, patch: Partial<Summary>) => void;
  remove: (id: string) => void;
}

function listPath(mailbox: string | null, q: string, cursor: string | null): string {
  const params = new URLSearchParams({ limit: String(PAGE_SIZE) });
  if (mailbox) params.set('mailbox', mailbox);
  if (q) params.set('q', q);
  if (cursor) params.set('cursor', cursor);
  return `/api/webmail/messages?${params.toString()}`;
}

/** Newest first: received_at DESC, then id DESC, as the server orders them. */
function isOlder(a: Summary, b: Summary): boolean {
  const ta = Date.parse(a.date);
  const tb = Date.parse(b.date);
  return ta < tb || (ta === tb && a.id < b.id);
}

/** `mailbox` null = the API's search over every folder but Trash and Junk. */
export function useMessageList(mailbox: string | null, q: string): MessageListState {
  const [items, setItems] = useState<Summary[]>([]);
  const [cursor, setCursor] = useState<string | null>(null);
  const [loading, setLoading] = useState(true);
  const [loadingMore, setLoadingMore] = useState(false);
  const [error, setError] = useState<unknown>(null);
  // a folder switch makes every answer still in flight for the old one stale
  const generation = useRef(0);
  const pagesLoaded = useRef(0);
  const busy = useRef(false);

  useEffect(() => {
    const mine = ++generation.current;
    setItems([]);
    setCursor(null);
    setLoading(true);
    setError(null);
    pagesLoaded.current = 0;
    busy.current = true;
    api<Page<Summary>>('GET', listPath(mailbox, q, null))
      .then((page) => {
        if (mine !== generation.current) return;
        setItems(page.data);
        setCursor(page.next_cursor);
        pagesLoaded.current = 1;
      })
      .catch((err: unknown) => {
        if (mine === generation.current) setError(err);
      })
      .finally(() => {
        if (mine !== generation.current) return;
        setLoading(false);
        busy.current = false;
      });
  }, [mailbox, q]);

  const loadMore = useCallback(() => {
    if (busy.current || !cursor) return;
    const mine = generation.current;
    busy.current = true;
    setLoadingMore(true);
    api<Page<Summary>>('GET', listPath(mailbox, q, cursor))
      .then((page) => {
        if (mine !== generation.current) return;
        setItems((old) => {
          const known = new Set(old.map((m) => m.id));
          return [...old, ...page.data.filter((m) => !known.has(m.id))];
        });
        setCursor(page.next_cursor);
        pagesLoaded.current += 1;
      })
      .catch((err: unknown) => {
        if (mine === generation.current) setError(err);
      })
      .finally(() => {
        if (mine !== generation.current) return;
        setLoadingMore(false);
        busy.current = false;
      });
  }, [mailbox, q, cursor]);

  const refresh = useCallback(async () => {
    const mine = generation.current;
    try {
      const page = await api<Page<Summary>>('GET', listPath(mailbox, q, null));
      if (mine !== generation.current) return;
      setError(null);
      const last = page.data[page.data.length - 1];
      if (pagesLoaded.current <= 1 || !page.next_cursor || !last) {
        setItems(page.data);
        setCursor(page.next_cursor);
        pagesLoaded.current = Math.max(1, pagesLoaded.current);
        return;
      }
      setItems((old) => [...page.data, ...old.filter((m) => isOlder(m, last))]);
    } catch (err) {
      if (mine === generation.current) setError(err);
    }
  }, [mailbox, q]);

  const update = useCallback((id: string, patch: Partial<Summary>) => {
    setItems((old) => old.map((m) => (m.id === id ? { ...m, ...patch } : m)));
  }, []);

  const remove = useCallback((id: string) => {
    setItems((old) => old.filter((m) => m.id !== id));
  }, []);

  return { items, loading, loadingMore, error, hasMore: cursor !== null, loadMore, refresh, update, remove };
}
