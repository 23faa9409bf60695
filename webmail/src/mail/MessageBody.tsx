/**
 * A message's body. HTML (already sanitised by the server) goes into a sandboxed iframe through
 * srcdoc, never allow-scripts or allow-forms, with its own Content-Security-Policy meta as the
 * first thing in its head: nothing loads but inline styles and data: images, so remote images
 * and CSS beacons stay blocked until the reader presses "Show images" (then img-src also allows
 * any host); remote addresses are also taken out of the markup until then, so no load is tried. Inline `cid:` images are swapped for data: URLs of the matching attachments, fetched
 * with the session's token. Text-only messages are shown as text, escaped by React.
 *
 * allow-same-origin lets this page measure the frame to size it; without allow-scripts nothing in
 * the frame can use that origin.
 */
import { useEffect, useMemo, useRef, useState } from 'react';
import { fetchBlob } from '../api';
import type { AttachmentInfo, MessageDetail } from './types';

const SANDBOX = 'allow-same-origin allow-popups allow-popups-to-escape-sandbox';

const FRAME_STYLE = `
body { margin: 8px; font-family: system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; font-size: 15px; color: #1d2430; overflow-wrap: anywhere; }
img { max-width: 100%; height: auto; }
pre { white-space: pre-wrap; }
blockquote { margin: 0 0 0 8px; padding-left: 8px; border-left: 3px solid #d9dee6; }`;

export function frameCsp(allowRemote: boolean): string {
  return `default-src 'none'; style-src 'unsafe-inline'; img-src data:${allowRemote ? ' *' : ''}`;
}

/** The frame's document: the message's HTML parsed inertly, our CSP meta and styles first in its head. */
export function buildSrcdoc(html: string, allowRemote: boolean, inline: Map<string, string>): string {
  // a DOMParser document has no browsing context: parsing it runs and loads nothing
  const doc = new DOMParser().parseFromString(html, 'text/html');
  for (const img of Array.from(doc.querySelectorAll('img[src]'))) {
    const src = img.getAttribute('src') ?? '';
    if (!/^cid:/i.test(src)) continue;
    const data = inline.get(cidKey(src.slice(4)));
    if (data) img.setAttribute('src', data);
  }
  if (!allowRemote) holdBackRemote(doc);
  const csp = doc.createElement('meta');
  csp.setAttribute('http-equiv', 'Content-Security-Policy');
  csp.setAttribute('content', frameCsp(allowRemote));
  const charset = doc.createElement('meta');
  charset.setAttribute('charset', 'utf-8');
  const style = doc.createElement('style');
  style.textContent = FRAME_STYLE;
  doc.head.prepend(csp, charset, style);
  return `<!doctype html>${doc.documentElement.outerHTML}`;
}

const URL_ATTRIBUTES = ['src', 'srcset', 'background', 'poster'];

/**
 * Until "Show images", every resource address that is not data: is parked in a data- attribute,
 * so the frame does not even attempt the load (the CSP would block it; this keeps it from being
 * tried at all, relative addresses included, which would resolve against this page).
 */
function holdBackRemote(doc: Document): void {
  for (const attr of URL_ATTRIBUTES) {
    for (const el of Array.from(doc.querySelectorAll(`[${attr}]`))) {
      const value = el.getAttribute(attr) ?? '';
      if (/^\s*data:/i.test(value) && attr !== 'srcset') continue;
      el.setAttribute(`data-blocked-${attr}`, value);
      el.removeAttribute(attr);
    }
  }
}

function cidKey(raw: string): string {
  let value = raw;
  try {
    value = decodeURIComponent(raw);
  } catch {
    // a malformed escape: compare as written
  }
  return value.replace(/^<|>$/g, '').toLowerCase();
}

function usesCid(html: string): boolean {
  return /src\s*=\s*["']?cid:/i.test(html);
}

function readAsDataUrl(blob: Blob): Promise<string> {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(typeof reader.result === 'string' ? reader.result : '');
    reader.onerror = () => reject(reader.error ?? new Error('cannot read the image'));
    reader.readAsDataURL(blob);
  });
}

/** content_id → data: URL for the message's inline images (the server sends them as octet-stream). */
async function inlineImages(messageId: string, attachments: AttachmentInfo[]): Promise<Map<string, string>> {
  const map = new Map<string, string>();
  const wanted = attachments.filter((a) => a.content_id && a.content_type.toLowerCase().startsWith('image/'));
  await Promise.all(
    wanted.map(async (a) => {
      try {
        const blob = await fetchBlob(`/api/webmail/messages/${messageId}/attachments/${a.id}`);
        map.set(cidKey(a.content_id!), await readAsDataUrl(new Blob([blob], { type: a.content_type })));
      } catch {
        // one missing inline image leaves its placeholder; the rest of the message still shows
      }
    }),
  );
  return map;
}

export function MessageBody({ message }: { message: MessageDetail }) {
  const [showImages, setShowImages] = useState(false);
  const [inline, setInline] = useState<Map<string, string> | null>(null);
  const frame = useRef<HTMLIFrameElement>(null);
  const html = message.html;

  useEffect(() => {
    let live = true;
    if (!html || !usesCid(html)) {
      setInline(new Map());
      return;
    }
    void inlineImages(message.id, message.attachments).then((map) => {
      if (live) setInline(map);
    });
    return () => {
      live = false;
    };
  }, [html, message.id, message.attachments]);

  const srcdoc = useMemo(() => (html && inline ? buildSrcdoc(html, showImages, inline) : ''), [html, showImages, inline]);
  const resize = useRef<ResizeObserver | null>(null);
  useEffect(() => () => resize.current?.disconnect(), []);

  /** Grows the frame to its document's height, and again whenever that changes (images arriving). */
  const fit = () => {
    const el = frame.current;
    const root = el?.contentDocument?.documentElement;
    if (!el || !root) return;
    const apply = () => {
      el.style.height = `${Math.max(120, root.scrollHeight + 4)}px`;
    };
    apply();
    resize.current?.disconnect();
    resize.current = new ResizeObserver(apply);
    resize.current.observe(root);
  };

  if (!html) {
    return <pre className="message-text">{message.text ?? ''}</pre>;
  }
  return (
    <>
      {message.remote_content && !showImages && (
        <div className="remote-banner">
          <span>Remote images are blocked to protect your privacy.</span>
          <button type="button" className="secondary" onClick={() => setShowImages(true)}>
            Show images
          </button>
        </div>
      )}
      {inline === null ? (
        <p className="muted">Loading the message…</p>
      ) : (
        <iframe ref={frame} title="Message body" className="message-frame" sandbox={SANDBOX} srcDoc={srcdoc} onLoad={fit} />
      )}
    </>
  );
}
