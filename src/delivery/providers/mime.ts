/**
 * Reads a finished RFC 5322 message back into the parts the JSON send APIs want (SendGrid v3
 * mail/send, Microsoft Graph sendMail): sender and reply-to addresses, subject, the text and
 * HTML bodies, attachments (with Content-ID for inline images, whose `cid:` links in the HTML
 * are kept as they are) and the header lines as written. Those APIs rebuild the message
 * themselves from these parts; SES and Mailgun take the raw bytes and never come here.
 */
import { simpleParser, type AddressObject } from 'mailparser';

export interface MimeAddress {
  address: string;
  name: string;
}

export interface MimeAttachment {
  filename: string;
  contentType: string;
  content: Buffer;
  inline: boolean;
  /** Content-ID without angle brackets, when the part has one. */
  contentId?: string;
}

export interface MimeHeader {
  /** As written in the message (case kept). */
  name: string;
  /** Unfolded, still encoded as in the message (RFC 2047 words stay encoded). */
  value: string;
}

export interface MimeParts {
  from: MimeAddress | null;
  replyTo: MimeAddress[];
  subject: string;
  text: string | null;
  html: string | null;
  attachments: MimeAttachment[];
  headers: MimeHeader[];
}

export async function readMimeParts(raw: Buffer): Promise<MimeParts> {
  const parsed = await simpleParser(raw, { skipTextToHtml: true, skipHtmlToText: true, keepCidLinks: true, skipTextLinks: true });
  return {
    from: addresses(parsed.from)[0] ?? null,
    replyTo: addresses(parsed.replyTo),
    subject: parsed.subject ?? '',
    text: parsed.text ?? null,
    html: parsed.html === false ? null : parsed.html,
    attachments: parsed.attachments.map((a, i) => ({
      filename: a.filename ?? `attachment-${i + 1}`,
      contentType: a.contentType || 'application/octet-stream',
      content: a.content,
      inline: a.contentDisposition === 'inline' || (a.related === true && Boolean(a.cid)),
      contentId: a.cid ? a.cid.replace(/^<|>$/g, '') : undefined,
    })),
    headers: parsed.headerLines.map((h) => headerFromLine(h.line)),
  };
}

function addresses(value: AddressObject | AddressObject[] | undefined): MimeAddress[] {
  const list = value === undefined ? [] : Array.isArray(value) ? value : [value];
  const out: MimeAddress[] = [];
  for (const obj of list) {
    for (const a of obj.value) {
      // a group's members are listed in `group`; its own entry has no address
      for (const member of a.group ?? [a]) if (member.address) out.push({ address: member.address, name: member.name });
    }
  }
  return out;
}

function headerFromLine(line: string): MimeHeader {
  const colon = line.indexOf(':');
  return { name: line.slice(0, colon).trim(), value: line.slice(colon + 1).replace(/\r?\n[ \t]+/g, ' ').trim() };
}
