/**
 * composeMime(): builds the RFC 5322 message for mail written through the API (drafts,
 * send-email, webmail compose) with nodemailer's MailComposer. The caller has already validated
 * every address and header text (address-validation.ts); this only assembles them.
 *
 * Guarantees of the bytes returned:
 * - CRLF line endings everywhere (RFC 5322 §2.1; the ingest path refuses bare CR or LF): the
 *   bodies are normalised first, because MailComposer keeps a bare CR in a 7bit text part;
 * - Message-ID given by the caller (at the sender's domain) and Date;
 * - no Bcc: field: blind recipients are only ever envelope recipients;
 * - no content read from a path or URL (only the buffers given).
 */
import MailComposer from 'nodemailer/lib/mail-composer';
import type { ParsedAddress } from './address-validation.js';

export interface ComposeAttachment {
  filename: string;
  contentType: string;
  content: Buffer;
  /** 'attachment' (default) or 'inline' with a content id. */
  disposition?: string | null;
  contentId?: string | null;
}

export interface ComposeInput {
  from: ParsedAddress;
  to: ParsedAddress[];
  cc: ParsedAddress[];
  subject: string;
  text: string | null;
  html: string | null;
  /** With angle brackets: `<id@domain>`. */
  messageId: string;
  date: Date;
  inReplyTo?: string | null;
  references?: string[];
  attachments: ComposeAttachment[];
}

export async function composeMime(input: ComposeInput): Promise<Buffer> {
  const composer = new MailComposer({
    from: input.from,
    to: input.to.length > 0 ? input.to : undefined,
    cc: input.cc.length > 0 ? input.cc : undefined,
    subject: input.subject,
    messageId: input.messageId,
    date: input.date,
    inReplyTo: input.inReplyTo ?? undefined,
    references: input.references && input.references.length > 0 ? input.references : undefined,
    text: input.text === null && input.html === null ? '' : input.text === null ? undefined : crlf(input.text),
    html: input.html === null ? undefined : crlf(input.html),
    attachments: input.attachments.map((a) => ({
      filename: a.filename,
      contentType: a.contentType,
      content: a.content,
      contentDisposition: a.disposition === 'inline' && a.contentId ? 'inline' : 'attachment',
      ...(a.disposition === 'inline' && a.contentId ? { cid: stripBrackets(a.contentId) } : {}),
    })),
    newline: 'win',
    disableFileAccess: true,
    disableUrlAccess: true,
  });
  return composer.compile().build();
}

/** Every line break as CRLF. */
export function crlf(text: string): string {
  return text.replace(/\r\n|\r|\n/g, '\r\n');
}

function stripBrackets(id: string): string {
  return id.replace(/^<|>$/g, '');
}
