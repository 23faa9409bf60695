/**
 * Small shared pieces: the error banner showing the API's `error` text, loading and empty
 * states, and byte/date formatting. Pages build on these so messages look the same everywhere.
 */
import type { ReactNode } from 'react';
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
