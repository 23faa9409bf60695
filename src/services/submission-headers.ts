/**
 * SubmissionHeaders: the stream transform every submitted message passes through before the
 * ingest path (RFC 6409 §8, what a message submission agent may and must do). It holds back the
 * header block, then:
 * - requires exactly one From: field with exactly one address, and lets the caller check that the
 *   sender may use it (two From: fields are refused: a classic spoofing trick, where one client
 *   shows the first and another the second);
 * - removes Bcc: fields, so blind recipients are not revealed to everyone else;
 * - adds Date: and Message-ID: when the client left them out (RFC 6409 §8.2, §8.3).
 * The body then flows through untouched. A header block without an end is refused once it
 * passes MAX_SUBMISSION_HEADER_BYTES.
 */
import { randomUUID } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import addressparser from 'nodemailer/lib/addressparser';
import { AppError } from '../core/errors.js';
import { MAX_SUBMISSION_HEADER_BYTES } from '../core/limits.js';
import { formatRfc5322Date } from './trace-headers.js';

export interface HeaderFacts {
  /** The one From: address, lower-cased. */
  from: string;
  messageId: string;
  subject: string;
}

const END = Buffer.from('\r\n\r\n');

export class SubmissionHeaders extends Transform {
  private held: Buffer[] = [];
  private heldBytes = 0;
  private passing = false;
  /** Known once the header block has been read. */
  facts: HeaderFacts | null = null;

  constructor(
    /** Domain for a generated Message-ID (the sender's). */
    private readonly idDomain: string,
    /** Checks the From: address; rejects to refuse the message. */
    private readonly checkFrom: (address: string) => Promise<void>,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    if (this.passing) {
      callback(null, chunk);
      return;
    }
    this.held.push(chunk);
    this.heldBytes += chunk.length;
    const all = Buffer.concat(this.held);
    this.held = [all];
    const end = all.indexOf(END);
    if (end === -1) {
      if (this.heldBytes > MAX_SUBMISSION_HEADER_BYTES) {
        callback(new AppError('bad_header', `the header block is larger than ${MAX_SUBMISSION_HEADER_BYTES} bytes or has no end`));
        return;
      }
      callback();
      return;
    }
    this.release(all.subarray(0, end + 2), all.subarray(end + 2), callback);
  }

  override _flush(callback: TransformCallback): void {
    if (this.passing) {
      callback();
      return;
    }
    // a message that is all header (no empty line, no body)
    const all = Buffer.concat(this.held);
    const header = all.length === 0 || all.subarray(-2).equals(Buffer.from('\r\n')) ? all : Buffer.concat([all, Buffer.from('\r\n')]);
    this.release(header, Buffer.alloc(0), callback);
  }

  /** `header`: the field lines, each ending in CRLF; `rest`: from the empty line on. */
  private release(header: Buffer, rest: Buffer, callback: TransformCallback): void {
    this.held = [];
    this.passing = true;
    let fields: Field[];
    let facts: HeaderFacts;
    let extra = '';
    try {
      fields = splitFields(header);
      const from = fields.filter((f) => f.name === 'from');
      if (from.length === 0) throw new AppError('bad_header', 'the message has no From: header field');
      if (from.length > 1) throw new AppError('bad_header', `the message has ${from.length} From: header fields; exactly one is allowed`);
      const addresses = addressparser(unfold(from[0]!.value), { flatten: true });
      if (addresses.length !== 1 || !addresses[0]!.address) {
        throw new AppError('bad_header', 'the From: header field must hold exactly one address');
      }
      const messageIdField = fields.find((f) => f.name === 'message-id');
      let messageId = messageIdField ? unfold(messageIdField.value).trim() : '';
      if (!messageId) {
        messageId = `<${randomUUID()}@${this.idDomain}>`;
        extra += `Message-ID: ${messageId}\r\n`;
      }
      if (!fields.some((f) => f.name === 'date')) extra += `Date: ${formatRfc5322Date(new Date())}\r\n`;
      const subject = fields.find((f) => f.name === 'subject');
      facts = { from: addresses[0]!.address.toLowerCase(), messageId, subject: subject ? unfold(subject.value).trim() : '' };
    } catch (err) {
      callback(err as Error);
      return;
    }
    this.checkFrom(facts.from).then(
      () => {
        this.facts = facts;
        const kept = fields.filter((f) => f.name !== 'bcc').map((f) => f.raw);
        callback(null, Buffer.concat([...kept, Buffer.from(extra, 'latin1'), rest]));
      },
      (err: unknown) => callback(err as Error),
    );
  }
}

interface Field {
  /** Lower-cased field name ('' for a malformed line, kept as it is). */
  name: string;
  /** Everything after the colon, folding included. */
  value: string;
  /** The field's bytes, CRLFs included. */
  raw: Buffer;
}

/** Splits a header block into fields, continuation lines attached to the field they continue. */
function splitFields(header: Buffer): Field[] {
  const fields: Field[] = [];
  let start = 0;
  while (start < header.length) {
    let end = header.indexOf('\r\n', start);
    if (end === -1) end = header.length - 2;
    // continuation lines start with white space
    while (end + 2 < header.length && (header[end + 2] === 0x20 || header[end + 2] === 0x09)) {
      const next = header.indexOf('\r\n', end + 2);
      end = next === -1 ? header.length - 2 : next;
    }
    const raw = header.subarray(start, end + 2);
    const text = raw.toString('latin1');
    const colon = text.indexOf(':');
    const name = colon > 0 && /^[\x21-\x39\x3b-\x7e]+$/.test(text.slice(0, colon)) ? text.slice(0, colon).toLowerCase() : '';
    fields.push({ name, value: colon > 0 ? Buffer.from(text.slice(colon + 1), 'latin1').toString('utf8') : '', raw });
    start = end + 2;
  }
  return fields;
}

function unfold(value: string): string {
  return value.replace(/\r\n(?=[ \t])/g, '').replace(/\r\n$/, '');
}
