/**
 * Loads a cursor-paginated admin list (`{data, next_cursor}`, API.md "Pagination") and keeps it
 * as page state: the rows so far, whether more exist, loading and error. Pages change rows in
 * place after their own writes (`put` a created or changed row, `drop` a deleted one) instead of
 * reloading everything.
 */
import { useCallback, useEffect, useRef, useState } from 'react';
import { api, type Page } from '../api';

export interface PagedList<T extends { id: string }> {
  items: T[];
  /** A changed row replaces its old self in place; a new one goes first. */
  put: (item: T) => void;
  drop: (item: T) => void;
  /** True until the first page has arrived (or failed). */
  loading: boolean;
  loadingMore: boolean;
  error: unknown;
  clearError: () => void;
  hasMore: boolean;
  loadMore: () => void;
}

export function usePagedList<T extends { id: string }>(path: string, limit = 50): PagedList<T> {
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
    put: (item) =>
      setItemsState((old) => (old.some((x) => x.id === item.id) ? old.map((x) => (x.id === item.id ? item : x)) : [item, ...old])),
    drop: (item) => setItemsState((old) => old.filter((x) => x.id !== item.id)),
    loading,
    loadingMore,
    error,
    clearError: () => setError(null),
    hasMore: cursor !== null,
    loadMore,
  };
}
