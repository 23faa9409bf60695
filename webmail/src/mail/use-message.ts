/**
 * The open message in full (GET /api/webmail/messages/:id), reloaded when the id changes;
 * `patch` keeps it in step with the toolbar's changes (read, flagged, moved) without a refetch.
 */
import { useCallback, useEffect, useState } from 'react';
import { api } from '../api';
import type { MessageDetail } from './types';

export interface OpenMessage {
  message: MessageDetail | null;
  error: unknown;
  loading: boolean;
  patch: (change: Partial<MessageDetail>) => void;
}

export function useMessage(id: string | null): OpenMessage {
  const [message, setMessage] = useState<MessageDetail | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [loading, setLoading] = useState(false);

  useEffect(() => {
    setMessage(null);
    setError(null);
    if (!id) {
      setLoading(false);
      return;
    }
    let live = true;
    setLoading(true);
    api<MessageDetail>('GET', `/api/webmail/messages/${encodeURIComponent(id)}`)
      .then((m) => {
        if (live) setMessage(m);
      })
      .catch((err: unknown) => {
        if (live) setError(err);
      })
      .finally(() => {
        if (live) setLoading(false);
      });
    return () => {
      live = false;
    };
  }, [id]);

  const patch = useCallback((change: Partial<MessageDetail>) => {
    setMessage((m) => (m ? { ...m, ...change } : m));
  }, []);

  return { message, error, loading, patch };
}
