/**
 * The shapes of the webmail REST API (webmail-common.md "REST API for the webmail"), snake_case
 * as the server sends them, plus the folder naming the Mail section's URLs use
 * (`/mail/INBOX`, `/mail/Drafts`, …, or a user folder's id).
 */

export type SpecialUse = 'inbox' | 'drafts' | 'sent' | 'junk' | 'trash';

export interface Folder {
  id: string;
  name: string;
  special_use: SpecialUse | null;
  total: number;
  unread: number;
}

export interface MailboxesResponse {
  mailbox: { id: string; address: string; quota_bytes: number; used_bytes: number };
  data: Folder[];
}

export interface Address {
  name: string;
  address: string;
}

export interface Summary {
  id: string;
  folder_id: string;
  from: Address | null;
  to: Address[];
  subject: string;
  snippet: string;
  date: string;
  sent_at: string | null;
  size: number;
  seen: boolean;
  flagged: boolean;
  answered: boolean;
  draft: boolean;
  has_attachments: boolean;
}

export interface AttachmentInfo {
  id: string;
  filename: string | null;
  content_type: string;
  size: number;
  disposition?: string | null;
  content_id?: string | null;
}

export interface DraftFields {
  to: Address[];
  cc: Address[];
  bcc: Address[];
  subject: string;
  text: string | null;
  html: string | null;
}

/** GET /api/webmail/messages/:id: `draft` there is the draft's fields (or null), not the summary's boolean. */
export interface MessageDetail extends Omit<Summary, 'draft'> {
  message_id: string | null;
  in_reply_to: string | null;
  references: string[];
  cc: Address[];
  text: string | null;
  html: string | null;
  remote_content: boolean;
  attachments: AttachmentInfo[];
  auth: { spf: string; dkim: string; dmarc: string } | null;
  /** Set on the Drafts copy of a draft: what the compose view reopens (with Bcc). */
  draft: DraftFields | null;
}

/** The 201 answer of POST /api/webmail/messages with draft: true (a MailView). */
export interface SavedDraft {
  id: string;
  stored_message_id: string | null;
  attachments: AttachmentInfo[];
}

/** The 202 answer of a send. */
export interface Queued {
  id: string;
  status: 'queued';
  recipients: { address: string; status: string }[];
}

/** GET /api/mails/:id: the per-recipient delivery state after a send. */
export interface MailStatus {
  id: string;
  recipients: { address: string; status: string; last_reply: string | null; attempts: number }[];
}

export const STANDARD_FOLDERS: Record<SpecialUse, string> = {
  inbox: 'INBOX',
  drafts: 'Drafts',
  sent: 'Sent',
  junk: 'Junk',
  trash: 'Trash',
};

const DISPLAY: Record<SpecialUse, string> = { inbox: 'Inbox', drafts: 'Drafts', sent: 'Sent', junk: 'Junk', trash: 'Trash' };

/** The name people see: Inbox, Drafts, … or the user folder's own name. */
export function displayName(folder: Folder): string {
  return folder.special_use ? DISPLAY[folder.special_use] : folder.name;
}

/** The URL segment of a folder: its standard name, or its id for a user folder. */
export function folderParam(folder: Folder): string {
  return folder.special_use ? STANDARD_FOLDERS[folder.special_use] : folder.id;
}

/** The folder a URL segment names (standard names case-insensitively), if it is loaded. */
export function findFolder(folders: Folder[], param: string): Folder | undefined {
  const lower = param.toLowerCase();
  return folders.find((f) => f.id === param || (f.special_use !== null && STANDARD_FOLDERS[f.special_use].toLowerCase() === lower));
}

export function formatAddress(a: Address | null | undefined): string {
  if (!a) return '(unknown sender)';
  return a.name ? `${a.name} <${a.address}>` : a.address;
}

export function shortAddress(a: Address | null | undefined): string {
  if (!a) return '(unknown sender)';
  return a.name || a.address;
}
