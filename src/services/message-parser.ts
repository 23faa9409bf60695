/**
 * parseMessage(): reads a raw RFC 5322 message from a stream with mailparser and returns what
 * the message list, reading pane and search need. Attachment bodies are streamed as they are
 * decoded into staged blobs, or kept in memory up to the inline limit (see blobs/spill-buffer.ts)
 * for their database row; never held whole in memory beyond that. Every string is stripped of NUL bytes
 * (PostgreSQL text cannot hold them) and long bodies are cut to MAX_STORED_BODY_BYTES (the raw
 * blob keeps everything). A message mailparser cannot fully make sense of (a broken boundary,
 * an unknown charset) still parses to what could be read: mail is stored, not judged.
 */
import type { Readable } from 'node:stream';
import { MailParser, type AddressObject, type AttachmentStream, type MessageText } from 'mailparser';
import { MAX_STORED_BODY_BYTES, SNIPPET_CHARS } from '../core/limits.js';
import type { BlobStore } from '../blobs/blob-store.js';
import { spillToStore, type SpooledBlob } from '../blobs/spill-buffer.js';
import { LegacyHeaderCharset } from './legacy-header-charset.js';

export interface ParsedAddress {
  name: string;
  address: string;
}

export interface ParsedAttachment {
  blob: SpooledBlob;
  filename: string | null;
  contentType: string;
  disposition: string | null;
  contentId: string | null;
}

export interface ParsedMessage {
  messageId: string | null;
  inReplyTo: string | null;
  references: string[];
  subject: string;
  from: ParsedAddress | null;
  to: ParsedAddress[];
  cc: ParsedAddress[];
  date: Date | null;
  text: string | null;
  html: string | null;
  snippet: string;
  attachments: ParsedAttachment[];
}

export async function parseMessage(source: Readable, blobs: BlobStore, inlineMaxBytes: number): Promise<ParsedMessage> {
  const parser = new MailParser({ checksumAlgo: 'sha256', skipImageLinks: true, skipTextToHtml: true });
  // filled by index: staging finishes out of order, the list keeps the message's order
  const slots: (ParsedAttachment | undefined)[] = [];
  const staging: Promise<void>[] = [];
  let text: string | null = null;
  let html: string | null = null;

  parser.on('data', (part: AttachmentStream | MessageText) => {
    if (part.type === 'attachment') {
      const att = part;
      const index = slots.length;
      slots.push(undefined);
      staging.push(
        spillToStore(att.content as Readable, blobs, inlineMaxBytes).then(
          (blob) => {
            slots[index] = {
              blob,
              filename: att.filename ? clean(att.filename) : null,
              contentType: clean(att.contentType || 'application/octet-stream'),
              disposition: att.contentDisposition ? clean(att.contentDisposition) : null,
              contentId: att.contentId ? clean(att.contentId) : null,
            };
            att.release();
          },
          (err: unknown) => {
            att.release();
            throw err;
          },
        ),
      );
    } else {
      if (typeof part.text === 'string') text = cut(clean(part.text));
      if (typeof part.html === 'string') html = cut(clean(part.html));
    }
  });

  const done = new Promise<void>((resolve, reject) => {
    parser.once('end', resolve);
    parser.once('error', reject);
  });
  // raw 8-bit header text in a legacy charset is re-decoded on the way in (see legacy-header-charset.ts)
  source.pipe(new LegacyHeaderCharset()).pipe(parser);
  try {
    await done;
  } catch (err) {
    await Promise.allSettled(staging);
    await discardAll(slots);
    throw err;
  }
  const settled = await Promise.allSettled(staging);
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failed) {
    await discardAll(slots);
    throw failed.reason;
  }
  const attachments = slots.filter((a): a is ParsedAttachment => a !== undefined);

  const plain = text ?? (html ? htmlToPlain(html) : '');
  return {
    messageId: typeof parser.messageId === 'string' && parser.messageId ? clean(parser.messageId) : null,
    inReplyTo: typeof parser.inReplyTo === 'string' && parser.inReplyTo ? clean(parser.inReplyTo) : null,
    references: toList(parser.references).map(clean),
    subject: clean(typeof parser.subject === 'string' ? parser.subject : ''),
    from: firstAddress(parser.from),
    to: addresses(parser.to),
    cc: addresses(parser.cc),
    date: parser.date instanceof Date && !Number.isNaN(parser.date.getTime()) ? parser.date : null,
    text,
    html,
    snippet: plain.replace(/\s+/g, ' ').trim().slice(0, SNIPPET_CHARS),
    attachments,
  };
}

async function discardAll(slots: (ParsedAttachment | undefined)[]): Promise<void> {
  await Promise.all(slots.map((a) => (a ? a.blob.discard() : Promise.resolve())));
}

interface ParserFields {
  messageId?: unknown;
  inReplyTo?: unknown;
  references?: unknown;
  subject?: unknown;
  from?: AddressObject;
  to?: AddressObject | AddressObject[];
  cc?: AddressObject | AddressObject[];
  date?: unknown;
}
declare module 'mailparser' {
  // mailparser sets these on itself when the top-level headers arrive
  // eslint-disable-next-line @typescript-eslint/no-empty-object-type
  interface MailParser extends ParserFields {}
}

// eslint-disable-next-line no-control-regex
const NUL = /\u0000/g;

function clean(s: string): string {
  return s.replace(NUL, '');
}

function cut(s: string): string {
  if (Buffer.byteLength(s) <= MAX_STORED_BODY_BYTES) return s;
  return Buffer.from(s).subarray(0, MAX_STORED_BODY_BYTES).toString('utf8').replace(/\uFFFD$/, '');
}

function toList(v: unknown): string[] {
  if (Array.isArray(v)) return v.map(String);
  if (typeof v === 'string') return v.split(/\s+/).filter(Boolean);
  return [];
}

function addresses(v: AddressObject | AddressObject[] | undefined): ParsedAddress[] {
  if (!v) return [];
  const out: ParsedAddress[] = [];
  const visit = (list: { name: string; address?: string; group?: { name: string; address?: string }[] }[]): void => {
    for (const a of list) {
      if (a.group) visit(a.group);
      else if (a.address) out.push({ name: clean(a.name || ''), address: clean(a.address.toLowerCase()) });
    }
  };
  for (const obj of Array.isArray(v) ? v : [v]) visit(obj.value);
  return out;
}

function firstAddress(v: AddressObject | undefined): ParsedAddress | null {
  return addresses(v)[0] ?? null;
}

function htmlToPlain(html: string): string {
  return html
    .replace(/<(script|style)[\s\S]*?<\/\1>/gi, ' ')
    .replace(/<[^>]+>/g, ' ')
    .replace(/&nbsp;/g, ' ')
    .replace(/&amp;/g, '&')
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>');
}
