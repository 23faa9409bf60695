/**
 * The shapes /api/webmail returns (snake_case; webmail-common contract): a folder with its
 * counts, a message summary for lists, and a message in full with its HTML sanitised
 * (html-sanitizer.ts) and, for the Drafts copy of a draft, the draft's fields. Pure functions
 * over rows; WebmailService loads the rows.
 */
import type { FolderCounts, MessageRow } from '../db/webmail.repository.js';
import type { AddressJson, Attachment, Message, SpecialUse } from '../db/types.js';
import { sanitizeMailHtml } from './html-sanitizer.js';

export interface FolderView {
  id: string;
  name: string;
  special_use: SpecialUse | null;
  total: number;
  unread: number;
}

export interface MessageSummary {
  id: string;
  folder_id: string;
  from: AddressJson;
  to: AddressJson[];
  subject: string;
  snippet: string;
  date: Date;
  sent_at: Date | null;
  size: number;
  seen: boolean;
  flagged: boolean;
  answered: boolean;
  draft: boolean;
  has_attachments: boolean;
}

/** A summary plus the content; `draft` is here the draft's fields (the Drafts copy of a draft) or null. */
export interface MessageView extends Omit<MessageSummary, 'draft'> {
  message_id: string | null;
  in_reply_to: string | null;
  references: string[];
  cc: AddressJson[];
  text: string | null;
  html: string | null;
  remote_content: boolean;
  attachments: { id: string; filename: string | null; content_type: string; size: number; disposition: string | null; content_id: string | null }[];
  auth: { spf: string; dkim: string; dmarc: string } | null;
  draft: DraftView | null;
}

export interface DraftView {
  to: AddressJson[];
  cc: AddressJson[];
  bcc: AddressJson[];
  subject: string;
  text: string | null;
  html: string | null;
}

export function folderView(f: FolderCounts): FolderView {
  return { id: f.id, name: f.name, special_use: f.special_use, total: f.total, unread: f.unread };
}

export function summary(m: MessageRow): MessageSummary {
  return {
    id: m.id,
    folder_id: m.folder_id,
    from: { name: m.from_name, address: m.from_address },
    to: m.to_addresses,
    subject: m.subject,
    snippet: m.snippet,
    date: m.received_at,
    sent_at: m.sent_at,
    size: Number(m.size),
    seen: m.seen,
    flagged: m.flagged,
    answered: m.answered,
    draft: m.draft,
    has_attachments: m.has_attachments,
  };
}

export function messageView(m: Message, attachments: Attachment[], draft: DraftView | null): MessageView {
  const safe = m.html_body === null ? null : sanitizeMailHtml(m.html_body);
  const auth = m.auth_summary as { spf?: string; dkim?: string; dmarc?: string } | null;
  return {
    ...summary(m),
    message_id: m.message_id,
    in_reply_to: m.in_reply_to,
    references: m.references_ids,
    cc: m.cc_addresses,
    text: m.text_body,
    html: safe?.html ?? null,
    remote_content: safe?.remoteContent ?? false,
    attachments: attachments.map((a) => ({
      id: a.id,
      filename: a.filename,
      content_type: a.content_type,
      size: Number(a.size),
      disposition: a.disposition,
      // as cid: URLs name it (RFC 2392), without the angle brackets of the Content-ID field
      content_id: a.content_id === null ? null : a.content_id.replace(/^<|>$/g, ''),
    })),
    auth: auth ? { spf: auth.spf ?? 'none', dkim: auth.dkim ?? 'none', dmarc: auth.dmarc ?? 'none' } : null,
    draft,
  };
}
