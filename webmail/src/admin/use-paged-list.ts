/**
 * Loads a cursor-paginated admin list (`{data, next_cursor}`, API.md "Pagination") and keeps it
 * as page state: the rows so far, whether more exist, loading and error. Pages change rows in
 * place after their own writes (setItems) instead of reloading everything.
 */
import { useCallback, useEffect, useRef, useState } from 'react';
import { api, type Page } from '../api';

export interface PagedList<T> {
  items: T[];
  setItems: (update: (items: T[]) => T[]) => void;
  /** True until the first page has arrived (or failed). */
  loading: boolean;
  loadingMore: boolean;
  error: unknown;
  clearError: () => void;
  hasMore: boolean;
  loadMore: () => void;
}

export function usePagedList<T>(path: string, limit = 50): PagedList<T> {
  const [items, setItemsState] = useState<T[]>([]);
  const [cursor, setCursor] = useState<string | null>(null);
  const [loading, setLoading] = useState(true);
  const [loadingMore, setLoadingMore] = useState(false);
  const [error, setError] = useState<unknown>(null);
  // a page that arrives after the component left (or the path changed) must not be applied
  const generation = useRef(0);

  const fetchPage = useCallback(
    async (after: string | null) => {
      const mine = generation.current;
      const query = new URLSearchParams({ limit: String(limit) });
      if (after) query.set('cursor', after);
      try {
        const page = await api<Page<T>>('GET', `${path}?${query.toString()}`);
        if (mine !== generation.current) return;
        setItemsState((old) => (after ? [...old, ...page.data] : page.data));
        setCursor(page.next_cursor);
        setError(null);
      } catch (err) {
        if (mine === generation.current) setError(err);
      }
    },
    [path, limit],
  );

  useEffect(() => {
    const mine = ++generation.current;
    setLoading(true);
    void fetchPage(null).finally(() => {
      if (mine === generation.current) setLoading(false);
    });
    return () => {
      generation.current++;
    };
  }, [fetchPage]);

  const loadMore = useCallback(() => {
    if (!cursor) return;
    setLoadingMore(true);
    void fetchPage(cursor).finally(() => setLoadingMore(false));
  }, [cursor, fetchPage]);

  return {
    items,
    setItems: setItemsState,
    loading,
    loadingMore,
    error,
    clearError: () => setError(null),
    hasMore: cursor !== null,
    loadMore,
  };
}
