/**
 * Small shared pieces: the error banner showing the API's `error` text, loading and empty
 * states, the busy/error state of an action (useAction), and byte/date formatting. Pages build
 * on these so messages look the same everywhere.
 */
import { useCallback, useState, type ReactNode } from 'react';
import { ApiError } from './api';

export function errorText(err: unknown): string {
  if (err instanceof ApiError) {
    const detail = err.details.find((d) => d.message && !err.message.includes(d.message));
    return detail ? `${err.message} (${detail.path ? `${detail.path}: ` : ''}${detail.message})` : err.message;
  }
  return err instanceof Error ? err.message : String(err);
}

export function ErrorBanner({ error, onDismiss }: { error: unknown; onDismiss?: () => void }) {
  if (error === null || error === undefined) return null;
  return (
    <div role="alert" className="banner banner-error">
      <span>{errorText(error)}</span>
      {onDismiss && (
        <button type="button" className="link" onClick={onDismiss} aria-label="Dismiss error">
          ×
        </button>
      )}
    </div>
  );
}

/**
 * The busy flag and the error of a form or button that calls the API. Every one of them did the
 * same dance (clear the error, set busy, await, catch into the error banner, clear busy); `run`
 * does it once and says whether the action succeeded. `keepBusyOnSuccess` is for actions that
 * leave the page when they succeed (log in, sign up): the button stays disabled until it goes.
 * A state update after the component has gone (a row deleted, a page left) is a no-op in React.
 */
export function useAction({ keepBusyOnSuccess = false }: { keepBusyOnSuccess?: boolean } = {}) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const run = useCallback(
    async (action: () => Promise<unknown>): Promise<boolean> => {
      setBusy(true);
      setError(null);
      try {
        await action();
        if (!keepBusyOnSuccess) setBusy(false);
        return true;
      } catch (err) {
        setError(err);
        setBusy(false);
        return false;
      }
    },
    [keepBusyOnSuccess],
  );
  return { busy, error, setError, run };
}

export function Notice({ children }: { children: ReactNode }) {
  return (
    <div role="status" className="banner banner-ok">
      {children}
    </div>
  );
}

export function Loading({ label = 'Loading…' }: { label?: string }) {
  return (
    <div className="loading" role="status" aria-live="polite">
      {label}
    </div>
  );
}

export function Empty({ children }: { children: ReactNode }) {
  return <div className="empty">{children}</div>;
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(n < 10 * 1024 ? 1 : 0)} KB`;
  if (n < 1024 * 1024 * 1024) return `${(n / 1024 / 1024).toFixed(1)} MB`;
  return `${(n / 1024 / 1024 / 1024).toFixed(1)} GB`;
}

/** Today: the time; this year: day and month; older: the full date. */
export function formatListDate(iso: string, now = new Date()): string {
  const d = new Date(iso);
  if (d.toDateString() === now.toDateString()) return d.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
  if (d.getFullYear() === now.getFullYear()) return d.toLocaleDateString(undefined, { day: 'numeric', month: 'short' });
  return d.toLocaleDateString();
}

export function formatFullDate(iso: string): string {
  return new Date(iso).toLocaleString();
}
