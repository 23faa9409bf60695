/**
 * The webmail's one way to talk to the server's REST API (API.md). The access token lives in
 * memory only; the refresh token in localStorage so a reload keeps the session. A 401 on any
 * call triggers one silent refresh (shared by concurrent calls) and a retry; when the refresh
 * is refused the session ends and `onSessionEnded` sends the user to the login page.
 *
 * Every failure becomes an ApiError carrying the server's `error` text, which the pages show as
 * is: the API writes those messages for people.
 */

const REFRESH_KEY = 'webmail.refresh_token';

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details: { path?: string; message: string }[] = [],
  ) {
    super(message);
  }
}

export interface TokenPair {
  access_token: string;
  refresh_token: string;
  expires_in?: number;
}

let accessToken: string | null = null;
let refreshing: Promise<boolean> | null = null;
let sessionEnded: () => void = () => {};

export function onSessionEnded(fn: () => void): void {
  sessionEnded = fn;
}

export function setTokens(pair: TokenPair | null): void {
  accessToken = pair?.access_token ?? null;
  if (pair) localStorage.setItem(REFRESH_KEY, pair.refresh_token);
  else localStorage.removeItem(REFRESH_KEY);
}

export function hasRefreshToken(): boolean {
  return localStorage.getItem(REFRESH_KEY) !== null;
}

export function storedRefreshToken(): string | null {
  return localStorage.getItem(REFRESH_KEY);
}

/** One refresh at a time; every caller waiting on a 401 shares its outcome. */
export function refreshSession(): Promise<boolean> {
  refreshing ??= (async () => {
    const token = localStorage.getItem(REFRESH_KEY);
    if (!token) return false;
    try {
      const res = await fetch('/api/auth/refresh', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ refresh_token: token }),
      });
      if (!res.ok) {
        // a network hiccup keeps the token for the next try; a refusal ends the session
        if (res.status === 400 || res.status === 401 || res.status === 403) setTokens(null);
        return false;
      }
      setTokens((await res.json()) as TokenPair);
      return true;
    } catch {
      return false;
    } finally {
      refreshing = null;
    }
  })();
  return refreshing;
}

function authHeaders(): Record<string, string> {
  return accessToken ? { Authorization: `Bearer ${accessToken}` } : {};
}

async function errorFrom(res: Response): Promise<ApiError> {
  let body: { error?: string; code?: string; details?: { path?: string; message: string }[] } = {};
  try {
    body = (await res.json()) as typeof body;
  } catch {
    // not JSON (a proxy's error page): the status line says enough
  }
  const retry = res.headers.get('Retry-After');
  const text = body.error ?? `the server answered ${res.status} ${res.statusText}`;
  return new ApiError(res.status, body.code ?? 'http_error', retry && res.status === 429 ? `${text} (retry in ${retry} s)` : text, body.details ?? []);
}

/** fetch with the access token; on 401 one silent refresh and a retry. */
export async function authedFetch(path: string, init: RequestInit = {}): Promise<Response> {
  const send = () => fetch(path, { ...init, headers: { ...(init.headers as Record<string, string> | undefined), ...authHeaders() } });
  let res: Response;
  try {
    res = await send();
  } catch {
    throw new ApiError(0, 'network_error', 'cannot reach the server; check your connection');
  }
  if (res.status === 401 && (await refreshSession())) res = await send();
  if (res.status === 401) {
    setTokens(null);
    sessionEnded();
  }
  return res;
}

export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const init: RequestInit = { method };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers = { 'Content-Type': 'application/json' };
  }
  const res = await authedFetch(path, init);
  if (!res.ok) throw await errorFrom(res);
  if (res.status === 204) return undefined as T;
  return (await res.json()) as T;
}

/** Calls that need no session (login, signup): no refresh dance on 401. */
export async function publicApi<T>(method: string, path: string, body: unknown): Promise<T> {
  let res: Response;
  try {
    res = await fetch(path, { method, headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  } catch {
    throw new ApiError(0, 'network_error', 'cannot reach the server; check your connection');
  }
  if (!res.ok) throw await errorFrom(res);
  return (await res.json()) as T;
}

/**
 * Multipart upload with progress (fetch has no upload progress; XMLHttpRequest does).
 * `onProgress` gets a fraction 0..1.
 */
export function upload<T>(path: string, form: FormData, onProgress?: (fraction: number) => void): Promise<T> {
  const attempt = () =>
    new Promise<{ status: number; text: string; retryAfter: string | null }>((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open('POST', path);
      if (accessToken) xhr.setRequestHeader('Authorization', `Bearer ${accessToken}`);
      xhr.upload.onprogress = (e) => {
        if (e.lengthComputable && onProgress) onProgress(e.loaded / e.total);
      };
      xhr.onload = () => resolve({ status: xhr.status, text: xhr.responseText, retryAfter: xhr.getResponseHeader('Retry-After') });
      xhr.onerror = () => reject(new ApiError(0, 'network_error', 'the upload failed: cannot reach the server'));
      xhr.send(form);
    });
  return (async () => {
    let r = await attempt();
    if (r.status === 401 && (await refreshSession())) r = await attempt();
    if (r.status === 401) {
      setTokens(null);
      sessionEnded();
    }
    let body: { error?: string; code?: string; details?: { path?: string; message: string }[] } = {};
    try {
      body = JSON.parse(r.text) as typeof body;
    } catch {
      // not JSON
    }
    if (r.status < 200 || r.status >= 300) {
      throw new ApiError(r.status, body.code ?? 'http_error', body.error ?? `the upload failed with HTTP ${r.status}`, body.details ?? []);
    }
    return body as T;
  })();
}

/** Downloads a file the API serves with Content-Disposition: attachment, under its own name. */
export async function download(path: string, fallbackName: string): Promise<void> {
  const res = await authedFetch(path);
  if (!res.ok) throw await errorFrom(res);
  const blob = await res.blob();
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = filenameFrom(res.headers.get('Content-Disposition')) ?? fallbackName;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/** The bytes of a file the API serves, e.g. an inline image to show as a data: URL. */
export async function fetchBlob(path: string): Promise<Blob> {
  const res = await authedFetch(path);
  if (!res.ok) throw await errorFrom(res);
  return res.blob();
}

function filenameFrom(disposition: string | null): string | null {
  if (!disposition) return null;
  const star = /filename\*=UTF-8''([^;]+)/i.exec(disposition);
  if (star?.[1]) {
    try {
      return decodeURIComponent(star[1]);
    } catch {
      // fall through to the plain form
    }
  }
  const plain = /filename="?([^";]+)"?/i.exec(disposition);
  return plain?.[1] ?? null;
}

/**
 * Server-sent events over fetch (EventSource cannot send an Authorization header). Calls
 * `onEvent(type, data)` per event; resolves when the stream ends or `signal` aborts, and throws
 * when it cannot be opened. The caller reconnects (and falls back to polling) as it sees fit.
 */
export async function streamEvents(path: string, onEvent: (type: string, data: unknown) => void, signal: AbortSignal): Promise<void> {
  const res = await authedFetch(path, { headers: { Accept: 'text/event-stream' }, signal });
  if (!res.ok || !res.body) throw await errorFrom(res);
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end: number;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let type = 'message';
      const data: string[] = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) type = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).trimStart());
      }
      if (data.length === 0) continue;
      let parsed: unknown = data.join('\n');
      try {
        parsed = JSON.parse(parsed as string);
      } catch {
        // plain text data
      }
      onEvent(type, parsed);
    }
  }
}

/** The shapes the pages use (API.md, snake_case). */
export interface User {
  id: string;
  email: string;
  name: string | null;
  role: 'owner' | 'admin' | 'member';
  status: string;
  tenant_id: string;
}

export interface Tenant {
  id: string;
  name: string;
}

export interface MailboxInfo {
  id: string;
  address: string;
  quota_bytes?: number;
  used_bytes?: number;
  quota_mb?: number;
}

export interface Me {
  user: User;
  tenant: Tenant;
  mailboxes: MailboxInfo[];
}

export interface Page<T> {
  data: T[];
  next_cursor: string | null;
}
