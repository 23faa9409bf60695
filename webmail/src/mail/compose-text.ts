/**
 * Pure helpers of the compose view: address fields as people type them (comma- or
 * semicolon-separated, names quoted when they hold a comma) to the API's one-address-per-element
 * arrays, and the recipients, subject and quoted text of a reply, reply-all or forward.
 */
import type { Address, MessageDetail } from './types';

/** What the compose form starts from. */
export interface ComposeInit {
  to: string;
  cc: string;
  bcc: string;
  subject: string;
  text: string;
  /** The message id being answered (the service derives In-Reply-To and References from it). */
  inReplyTo?: string;
  /** Attachments carried over (a forward's originals, a reopened draft's own). */
  attachments: { id: string; filename: string | null; size: number }[];
  /** The Drafts copy being edited, replaced on every save. */
  draftId?: string;
}

export const EMPTY_COMPOSE: ComposeInit = { to: '', cc: '', bcc: '', subject: '', text: '', attachments: [] };

/** Splits "Ann <a@x>, "Doe, Bo" <b@y>; c@z" at separators outside quotes and angle brackets. */
export function splitAddresses(field: string): string[] {
  const out: string[] = [];
  let current = '';
  let quoted = false;
  let angle = false;
  for (const ch of field) {
    if (ch === '"' && !angle) quoted = !quoted;
    else if (ch === '<' && !quoted) angle = true;
    else if (ch === '>' && !quoted) angle = false;
    if ((ch === ',' || ch === ';') && !quoted && !angle) {
      if (current.trim()) out.push(current.trim());
      current = '';
    } else current += ch;
  }
  if (current.trim()) out.push(current.trim());
  return out;
}

export function formatForField(a: Address): string {
  if (!a.name) return a.address;
  const name = /[,;<>"@]/.test(a.name) ? `"${a.name.replace(/["\\]/g, '')}"` : a.name;
  return `${name} <${a.address}>`;
}

export function joinAddresses(list: Address[]): string {
  return list.map(formatForField).join(', ');
}

function withPrefix(prefix: string, subject: string): string {
  const re = new RegExp(`^\\s*${prefix}:`, 'i');
  return re.test(subject) ? subject : `${prefix}: ${subject}`;
}

function dedupe(list: Address[], exclude: Set<string>): Address[] {
  const out: Address[] = [];
  for (const a of list) {
    const key = a.address.toLowerCase();
    if (exclude.has(key)) continue;
    exclude.add(key);
    out.push(a);
  }
  return out;
}

/** The readable text of a message: its text part, or the HTML's text when there is none. */
export function plainText(m: MessageDetail): string {
  if (m.text) return m.text;
  if (!m.html) return '';
  const doc = new DOMParser().parseFromString(m.html, 'text/html');
  return (doc.body.innerText || doc.body.textContent || '').trim();
}

function quote(m: MessageDetail): string {
  const who = m.from ? formatForField(m.from) : 'someone';
  const when = new Date(m.sent_at ?? m.date).toLocaleString();
  const body = plainText(m)
    .split('\n')
    .map((line) => (line.startsWith('>') ? `>${line}` : `> ${line}`))
    .join('\n');
  return `\n\nOn ${when}, ${who} wrote:\n${body}\n`;
}

/**
 * Reply: to the sender (or, on a message you sent, to its recipients). Reply all: also everyone
 * in To and Cc, except yourself.
 */
export function replyInit(m: MessageDetail, self: string, all: boolean): ComposeInit {
  const me = self.toLowerCase();
  const fromSelf = m.from?.address.toLowerCase() === me;
  const primary = fromSelf ? m.to : m.from ? [m.from] : [];
  const exclude = new Set([me]);
  const to = dedupe(all ? [...primary, ...(fromSelf ? [] : m.to)] : primary, exclude);
  const cc = all ? dedupe(m.cc, exclude) : [];
  return {
    to: joinAddresses(to),
    cc: joinAddresses(cc),
    bcc: '',
    subject: withPrefix('Re', m.subject),
    text: quote(m),
    inReplyTo: m.id,
    attachments: [],
  };
}

export function forwardInit(m: MessageDetail): ComposeInit {
  const header = [
    '---------- Forwarded message ----------',
    `From: ${m.from ? formatForField(m.from) : ''}`,
    `Date: ${new Date(m.sent_at ?? m.date).toLocaleString()}`,
    `Subject: ${m.subject}`,
    `To: ${joinAddresses(m.to)}`,
    ...(m.cc.length ? [`Cc: ${joinAddresses(m.cc)}`] : []),
  ].join('\n');
  return {
    to: '',
    cc: '',
    bcc: '',
    subject: withPrefix('Fwd', m.subject),
    text: `\n\n${header}\n\n${plainText(m)}\n`,
    attachments: m.attachments.map((a) => ({ id: a.id, filename: a.filename, size: a.size })),
  };
}

/** A draft reopened from Drafts: its own fields (with Bcc) and attachments. */
export function draftInit(m: MessageDetail): ComposeInit {
  const d = m.draft;
  return {
    to: joinAddresses(d?.to ?? m.to),
    cc: joinAddresses(d?.cc ?? m.cc),
    bcc: joinAddresses(d?.bcc ?? []),
    subject: d?.subject ?? m.subject,
    text: d?.text ?? plainText(m),
    attachments: m.attachments.map((a) => ({ id: a.id, filename: a.filename, size: a.size })),
    draftId: m.id,
  };
}
