/**
 * Delivery status notifications (bounces and delay warnings) as RFC 3464 messages. The queue
 * calls buildDsn() when a recipient fails for good or has been deferred past the delay-warning
 * age, and sends the result to the original envelope sender with the null sender `<>` (a DSN is
 * never bounced: RFC 5321 §4.5.5, RFC 3464 §2).
 *
 * The message is `multipart/report; report-type=delivery-status` (RFC 6522) with three parts:
 * a human explanation (text/plain), the machine-readable `message/delivery-status` (RFC 3464 §2.2
 * per-message and §2.3 per-recipient fields) and the original header block as
 * `text/rfc822-headers` (the body is not returned: it may be large and is the sender's anyway).
 *
 * Guarantees: CRLF line endings only; every value that came from outside (addresses, remote
 * replies, host names, message ids) is reduced to one line before it is placed in a header or a
 * report field, so a CR/LF in a remote reply cannot add a header or a report field; header and
 * report lines are folded at whitespace to 78 characters (RFC 5322 §2.1.1) and never exceed 998.
 * Report fields are US-ASCII as RFC 3464 requires; the human part keeps UTF-8 (quoted-printable).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { encode as qpEncode, wrap as qpWrap } from 'nodemailer/lib/qp';
import { AppError } from '../core/errors.js';
import { formatRfc5322Date } from '../services/trace-headers.js';

export type DsnAction = 'failed' | 'delayed';

export interface DsnRecipient {
  /** The envelope recipient the report is about. */
  address: string;
  action: DsnAction;
  /** RFC 3463 status, `5.1.1`; an invalid one is derived from the diagnostic instead. */
  status: string;
  /** What went wrong: the remote reply (`550 5.1.1 no such user`) or our own description. */
  diagnostic: string;
  /** The host that gave the reply, when one did. */
  remoteMta?: string;
}

export interface DsnInput {
  /** Our host name (MAIL_HOSTNAME): Reporting-MTA, the MAILER-DAEMON address, the Message-ID. */
  hostname: string;
  /** The original envelope sender; the DSN goes to it. Never empty: a bounce is not bounced. */
  originalSender: string;
  recipients: DsnRecipient[];
  /** The original message's header block (headerBlock(raw)). */
  originalHeaders: Buffer;
  /** The original Message-ID, with or without angle brackets. */
  originalMessageId?: string;
  arrivalDate: Date;
  lastAttemptDate: Date;
  /** Required when any recipient is `delayed`: until when the queue keeps trying. */
  willRetryUntil?: Date;
  /** The DSN's own Date; now when absent. */
  date?: Date;
}

/** RFC 5322 §2.1.1: lines SHOULD stay within 78 characters and MUST within 998. */
const SOFT_LINE_CHARS = 78;
const HARD_LINE_CHARS = 998;
/** A remote reply longer than this is cut: DeliveryError keeps 1000 characters too. */
const MAX_DIAGNOSTIC_CHARS = 1000;
const TEXT_WRAP_CHARS = 76;
const STATUS_RE = /^[245]\.\d{1,3}\.\d{1,3}$/;

export function buildDsn(input: DsnInput): Buffer {
  const sender = addressOf(input.originalSender);
  if (sender === '') throw new AppError('internal', 'a DSN needs an original sender: mail from <> is never bounced', { kind: 'bug' });
  if (input.recipients.length === 0) throw new AppError('internal', 'a DSN needs at least one recipient', { kind: 'bug' });
  const recipients = input.recipients.map(normalizeRecipient);
  const delayed = recipients.some((r) => r.action === 'delayed');
  if (delayed && !input.willRetryUntil) throw new AppError('internal', 'a delay DSN needs willRetryUntil', { kind: 'bug' });

  const hostname = hostOf(input.hostname) || 'localhost';
  const headers = input.originalHeaders;
  const boundary = boundaryFor(headers);
  const messageId = messageIdOf(input.originalMessageId);
  const anyFailed = recipients.some((r) => r.action === 'failed');

  const top = [
    `From: "Mail Delivery System" <MAILER-DAEMON@${hostname}>`,
    `To: <${sender}>`,
    `Subject: ${anyFailed ? 'Undelivered Mail Returned to Sender' : 'Delayed Mail (still being retried)'}`,
    `Date: ${formatRfc5322Date(input.date ?? new Date())}`,
    `Message-ID: <${randomUUID()}@${hostname}>`,
    ...(messageId ? [`In-Reply-To: ${messageId}`, `References: ${messageId}`] : []),
    'Auto-Submitted: auto-replied',
    'MIME-Version: 1.0',
    `Content-Type: multipart/report; report-type=delivery-status; boundary="${boundary}"`,
  ].map((line) => fold(line));

  const human = humanPart({ ...input, hostname, recipients });
  const report = reportPart({ ...input, hostname, recipients });
  const originalEightBit = headers.some((b) => b > 0x7f);

  const text = [
    ...top,
    '',
    'This is a MIME-encapsulated message.',
    '',
    `--${boundary}`,
    'Content-Description: Notification',
    'Content-Type: text/plain; charset=utf-8',
    `Content-Transfer-Encoding: ${human.encoding}`,
    '',
    human.body,
    `--${boundary}`,
    'Content-Description: Delivery report',
    'Content-Type: message/delivery-status',
    '',
    report,
    `--${boundary}`,
    'Content-Description: Undelivered Message Headers',
    'Content-Type: text/rfc822-headers',
    `Content-Transfer-Encoding: ${originalEightBit ? '8bit' : '7bit'}`,
    '',
    '',
  ].join('\r\n');
  return Buffer.concat([Buffer.from(text, 'utf8'), withCrlf(headers), Buffer.from(`\r\n--${boundary}--\r\n`, 'ascii')]);
}

/**
 * The RFC 3463 status in an SMTP reply (`550 5.1.1 ...` or `550-5.1.1 ...` → `5.1.1`); without
 * one (or with one whose class contradicts the reply code), `X.0.0` from the basic code; for
 * text that is no SMTP reply at all, `fallback`.
 */
export function statusFromReply(reply: string, fallback: string): string {
  const match = /^\s*([245])\d\d(?=[ -]|$)(?:[ -]([245]\.\d{1,3}\.\d{1,3})(?=\s|$))?/.exec(reply);
  if (!match) return fallback;
  const basicClass = match[1]!;
  const enhanced = match[2];
  // a success reply carries no failure status
  if (basicClass === '2') return fallback;
  if (enhanced && enhanced.startsWith(basicClass)) return enhanced;
  return `${basicClass}.0.0`;
}

/**
 * The header block of a raw message: every byte up to (not including) the first empty line,
 * ending with the last header line's line break. A message with no body is all header.
 */
export function headerBlock(raw: Buffer): Buffer {
  for (let i = 0; i < raw.length; i++) {
    if (raw[i] !== 0x0a) continue;
    // an empty line is LF followed by LF or CRLF (bare LF is tolerated, as mail parsers do)
    if (raw[i + 1] === 0x0a) return raw.subarray(0, i + 1);
    if (raw[i + 1] === 0x0d && raw[i + 2] === 0x0a) return raw.subarray(0, i + 1);
  }
  return raw;
}

interface NormalizedRecipient {
  address: string;
  action: DsnAction;
  status: string;
  diagnostic: string;
  remoteMta: string;
}

/** The input after sanitising: what the part builders work from. */
type DsnContext = Omit<DsnInput, 'recipients'> & { recipients: NormalizedRecipient[] };

function normalizeRecipient(r: DsnRecipient): NormalizedRecipient {
  const diagnostic = oneLine(r.diagnostic).slice(0, MAX_DIAGNOSTIC_CHARS) || 'unknown error';
  const fallback = r.action === 'failed' ? '5.0.0' : '4.0.0';
  const wantedClass = fallback[0]!;
  let status = STATUS_RE.test(r.status) ? r.status : statusFromReply(diagnostic, fallback);
  // a "failed" report with a 4.x.x status (or the reverse) would contradict itself
  if (!status.startsWith(wantedClass)) status = fallback;
  return { address: addressOf(r.address), action: r.action, status, diagnostic, remoteMta: hostOf(r.remoteMta ?? '') };
}

function humanPart(input: DsnContext): { body: string; encoding: string } {
  const failed = input.recipients.filter((r) => r.action === 'failed');
  const delayed = input.recipients.filter((r) => r.action === 'delayed');
  const paragraphs: string[] = [`This is the mail system at host ${input.hostname}.`];
  if (failed.length > 0) {
    paragraphs.push(
      "I'm sorry to have to inform you that your message could not be delivered to one or more recipients. It is attached below (headers only).",
      ...failed.map(explain),
    );
  }
  if (delayed.length > 0) {
    paragraphs.push(
      `THIS IS A WARNING ONLY. YOU DO NOT NEED TO RESEND YOUR MESSAGE. Your message could not be delivered yet to the recipients below. The mail system will keep trying until ${formatRfc5322Date(input.willRetryUntil!)}.`,
      ...delayed.map(explain),
    );
  }
  const text = paragraphs.map((p) => wrapText(p, TEXT_WRAP_CHARS)).join('\r\n\r\n') + '\r\n';
  // ASCII with short lines needs no encoding; UTF-8 (an SMTPUTF8 address, a remote reply) does
  if (/^[\x20-\x7e\r\n]*$/.test(text) && !/[^\r\n]{999}/.test(text)) return { body: text, encoding: '7bit' };
  return { body: qpWrap(qpEncode(text), TEXT_WRAP_CHARS) + '\r\n', encoding: 'quoted-printable' };
}

function explain(r: NormalizedRecipient): string {
  const where = r.remoteMta ? `host ${r.remoteMta} said: ` : '';
  return `<${r.address}>: ${where}${r.diagnostic}`;
}

function reportPart(input: DsnContext): string {
  const perMessage = [`Reporting-MTA: dns; ${input.hostname}`, `Arrival-Date: ${formatRfc5322Date(input.arrivalDate)}`];
  const blocks = [perMessage, ...input.recipients.map((r) => recipientFields(r, input))];
  return blocks.map((fields) => fields.map((f) => fold(ascii(f))).join('\r\n') + '\r\n').join('\r\n');
}

function recipientFields(r: NormalizedRecipient, input: DsnContext): string[] {
  // a diagnostic that is an SMTP reply is typed `smtp` (RFC 3464 §2.3.6); our own words are not
  const smtpReply = /^[245]\d\d(?:[ -]|$)/.test(r.diagnostic);
  return [
    `Final-Recipient: ${recipientType(r.address)}`,
    `Action: ${r.action}`,
    `Status: ${r.status}`,
    ...(r.remoteMta ? [`Remote-MTA: dns; ${r.remoteMta}`] : []),
    `Diagnostic-Code: ${smtpReply ? 'smtp' : 'X-mail-server'}; ${r.diagnostic}`,
    `Last-Attempt-Date: ${formatRfc5322Date(input.lastAttemptDate)}`,
    ...(r.action === 'delayed' && input.willRetryUntil ? [`Will-Retry-Until: ${formatRfc5322Date(input.willRetryUntil)}`] : []),
  ];
}

/** `rfc822; a@b`; a non-ASCII address as the RFC 6533 §3 `utf-8` type in its ASCII xtext form. */
function recipientType(address: string): string {
  if (/^[\x21-\x7e]*$/.test(address)) return `rfc822; ${address}`;
  let out = '';
  for (const ch of address) {
    const cp = ch.codePointAt(0)!;
    out += cp > 0x20 && cp < 0x7f && ch !== '+' && ch !== '=' && ch !== '\\' ? ch : `\\x{${cp.toString(16).toUpperCase()}}`;
  }
  return `utf-8; ${out}`;
}

/** Folds one header or report line at spaces; a word too long for any line is cut at 998. */
function fold(line: string): string {
  const words = line.split(' ');
  const lines: string[] = [];
  let current = words.shift() ?? '';
  for (const word of words) {
    if (current.length + 1 + word.length <= SOFT_LINE_CHARS) current += ` ${word}`;
    else {
      lines.push(current);
      current = ` ${word}`;
    }
  }
  lines.push(current);
  return lines.flatMap(hardSplit).join('\r\n');
}

function hardSplit(line: string): string[] {
  if (line.length <= HARD_LINE_CHARS) return [line];
  const parts = [line.slice(0, HARD_LINE_CHARS)];
  for (let i = HARD_LINE_CHARS; i < line.length; i += HARD_LINE_CHARS - 1) parts.push(` ${line.slice(i, i + HARD_LINE_CHARS - 1)}`);
  return parts;
}

/** Word-wraps body text to `width`; one word longer than that stays whole on its own line. */
function wrapText(text: string, width: number): string {
  const lines: string[] = [];
  let current = '';
  for (const word of text.split(' ')) {
    if (current === '') current = word;
    else if (current.length + 1 + word.length <= width) current += ` ${word}`;
    else {
      lines.push(current);
      current = word;
    }
  }
  lines.push(current);
  return lines.join('\r\n');
}

/** One line of text: every control character (CR, LF, TAB, NUL, ...) becomes a space; runs collapse. */
function oneLine(value: string): string {
  return value
    .replace(/[\p{Cc}\s]+/gu, ' ')
    .trim();
}

/** US-ASCII for report fields (RFC 3464 §2.1): anything else becomes '?'. */
function ascii(value: string): string {
  return value.replace(/[^\x20-\x7e]/g, '?');
}

/** An address for `<...>`: no whitespace, controls or angle brackets that would end the bracket. */
function addressOf(value: string): string {
  return value.replace(/[\p{Cc}\s<>]/gu, '');
}

/** A host name or address literal: letters, digits and the punctuation names and literals use. */
function hostOf(value: string): string {
  return value.replace(/[^A-Za-z0-9.\-:[\]_]/g, '');
}

/** `<id@host>` from an id with or without brackets; nothing usable gives undefined. */
function messageIdOf(value: string | undefined): string | undefined {
  const id = (value ?? '').trim().replace(/^<|>$/g, '').replace(/[^\x21-\x7e]|[<>]/g, '');
  return id === '' ? undefined : `<${id}>`;
}

/** A boundary that cannot occur in the included header block (the only part not written by us). */
function boundaryFor(headers: Buffer): string {
  for (;;) {
    const boundary = `----=_DSN_${randomBytes(12).toString('hex')}`;
    if (!headers.includes(boundary)) return boundary;
  }
}

/** The header block with every line ending as CRLF (a stored message may use bare LF). */
function withCrlf(headers: Buffer): Buffer {
  const text = headers.toString('latin1').replace(/\r?\n|\r(?!\n)/g, '\r\n');
  const ended = text === '' || text.endsWith('\r\n') ? text : `${text}\r\n`;
  return Buffer.from(ended, 'latin1');
}
