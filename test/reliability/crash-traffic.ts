/**
 * The traffic of the crash harness (crash.test.ts): senders that keep sending while the server
 * is killed under them, and the ledger that records every message BEFORE its first command goes
 * out, with the outcome its sender saw. The harness checks the server's state against it.
 *
 * Senders, all at once:
 *   - MX: unauthenticated sessions delivering to a local mailbox, several messages per
 *     connection, mostly small (kept in the database row), one in eight 100-200 KB (blob store);
 *     one in ten carries 30 Received fields, a mail loop a healthy server refuses at end of DATA;
 *   - large: one MX session sending 4 MB messages written in 256 KB pieces, so a kill can land
 *     while a message's DATA is half written (`largeHalfWritten` fires at that moment);
 *   - submission: SMTPS + AUTH PLAIN, one or two remote recipients per message, relayed through
 *     the outbound queue; one in six has a From: the user does not own, refused at end of DATA.
 *
 * Every message is unique (the subject names sender kind, kill cycle and sequence; only a resend,
 * see Ledger, repeats the subject and bytes of the message it resends) and hashed:
 * the whole bytes for MX (stored unchanged), the body for submissions (the server adds header
 * fields and a DKIM signature). Bodies are base64 lines, which never start with '.', so no
 * dot-stuffing is needed and the bytes stored equal the bytes sent.
 */
import { createHash, randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { RawSmtp, type Reply } from '../helpers/smtp-client.js';

export type Outcome = 'accepted' | 'rejected' | 'unknown';
export type SenderKind = 'mx' | 'large' | 'submission';

export interface Sent {
  kind: SenderKind;
  subject: string;
  /** SHA-256 of the bytes sent (mx, large) or of the body after the header block (submission). */
  sha256: string;
  recipients: string[];
  /** A healthy server refuses it (a mail loop; a From: the user may not use). */
  refusable: boolean;
  outcome: Outcome;
  /** The last reply line the sender got for it ('' when the kill took the reply). */
  reply: string;
  /** The end-of-data dot was written: without it, the message must never be stored. */
  dotSent: boolean;
  /** The kill cycle it was sent in. */
  cycle: number;
  /** 1, or which resend of the same bytes this is (an MX message whose reply a kill took). */
  attempt: number;
}

/** How failure messages name a message. */
export function describeSent(s: Sent): string {
  const reply = s.reply ? `: "${s.reply}"` : s.dotSent ? ', reply lost to the kill' : ', killed before end of data';
  const attempt = s.attempt > 1 ? `attempt ${s.attempt}, ` : '';
  return `${s.kind} message "${s.subject}" (${attempt}cycle ${s.cycle}, ${s.outcome}${reply}${s.refusable ? ', refusable' : ''})`;
}

export interface TrafficTarget {
  mxPort: number;
  smtpsPort: number;
  /** The local mailbox MX traffic goes to. */
  mailbox: string;
  /** The submitting user (who owns `user.email`). */
  user: { email: string; password: string };
  /** A domain not hosted here: submissions go to it through the relay. */
  remoteDomain: string;
}

export interface Traffic {
  /** Resolves with the first large message of this cycle once half its DATA is written. */
  readonly largeHalfWritten: Promise<Sent>;
  /** Asks every sender to stop and waits for them (a dead server makes them stop at once). */
  stop(): Promise<void>;
}

const MX_SENDERS = 3;
const SUBMISSION_SENDERS = 2;
const LARGE_BYTES = 4 * 1024 * 1024;
const LARGE_PIECE_BYTES = 256 * 1024;
/** Between two pieces of a large message: spreads its DATA over a few hundred ms. */
const LARGE_PIECE_GAP_MS = 15;
const LOOP_RECEIVED_FIELDS = 30;

interface Draft {
  entry: Sent;
  mailFrom: string;
  bytes: Buffer;
}

/**
 * Every message of the run, recorded before its first command; numbers each kind run-wide. An
 * MX message whose reply a kill took is sent again later with the same bytes, as a sending MTA
 * does (a submission is not: its user decides), so identical content meets the crash too.
 */
export class Ledger {
  readonly entries: Sent[] = [];
  private readonly counts: Record<SenderKind, number> = { mx: 0, large: 0, submission: 0 };
  private readonly retries: Record<SenderKind, Draft[]> = { mx: [], large: [], submission: [] };

  /** The next run-wide number of a kind: which messages are refusable does not depend on cycle length. */
  next(kind: SenderKind): number {
    return this.counts[kind]++;
  }

  record(entry: Sent): void {
    this.entries.push(entry);
  }

  /** A transaction died with the server: queue its message to be sent again (MX only). */
  lost(d: Draft): void {
    if (d.entry.kind !== 'submission' && d.entry.outcome === 'unknown') this.retries[d.entry.kind].push(d);
  }

  /** The next message of `kind` to send again, as a new attempt in `cycle`, or null. */
  retry(kind: SenderKind, cycle: number): Draft | null {
    const d = this.retries[kind].shift();
    if (!d) return null;
    return { ...d, entry: { ...d.entry, outcome: 'unknown', reply: '', dotSent: false, cycle, attempt: d.entry.attempt + 1 } };
  }
}

/** Starts every sender for one cycle; each new message is recorded in `ledger` before it is sent. */
export function startTraffic(target: TrafficTarget, cycle: number, ledger: Ledger): Traffic {
  let stopped = false;
  let onHalf: (s: Sent) => void = () => undefined;
  const largeHalfWritten = new Promise<Sent>((resolve) => (onHalf = resolve));
  const ctx: LoopContext = { ledger, stopped: () => stopped };
  const loops = [
    ...Array.from({ length: MX_SENDERS }, () =>
      senderLoop(ctx, () => mxSession(target), () => ledger.retry('mx', cycle) ?? mxDraft(target, cycle, ledger.next('mx')), writeWhole),
    ),
    ...Array.from({ length: SUBMISSION_SENDERS }, () =>
      senderLoop(ctx, () => submissionSession(target), () => submissionDraft(target, cycle, ledger.next('submission')), writeWhole),
    ),
    senderLoop(
      ctx,
      () => mxSession(target),
      () => ledger.retry('large', cycle) ?? largeDraft(target, cycle, ledger.next('large')),
      (c, d) => writeInPieces(c, d, onHalf),
    ),
  ];
  return {
    largeHalfWritten,
    async stop() {
      stopped = true;
      await Promise.all(loops);
    },
  };
}

interface LoopContext {
  ledger: Ledger;
  stopped: () => boolean;
}

type Writer = (c: RawSmtp, d: Draft) => Promise<void>;

async function senderLoop(ctx: LoopContext, open: () => Promise<RawSmtp>, draft: () => Draft, write: Writer): Promise<void> {
  while (!ctx.stopped()) {
    let c: RawSmtp | undefined;
    let inFlight: Draft | null = null;
    try {
      c = await open();
      while (!ctx.stopped()) {
        inFlight = draft();
        ctx.ledger.record(inFlight.entry);
        await transact(c, inFlight, write);
        inFlight = null;
      }
    } catch {
      // the server died under us (or is not listening yet): the message in flight stays 'unknown'
      if (inFlight) ctx.ledger.lost(inFlight);
      await sleep(100);
    } finally {
      c?.close();
    }
  }
}

async function mxSession(target: TrafficTarget): Promise<RawSmtp> {
  const c = await RawSmtp.connect(target.mxPort);
  await expect(c.hello(), 250, 'EHLO');
  return c;
}

async function submissionSession(target: TrafficTarget): Promise<RawSmtp> {
  const c = await RawSmtp.connectTls(target.smtpsPort);
  await expect(c.hello(), 250, 'EHLO');
  await expect(c.authPlain(target.user.email, target.user.password), 235, 'AUTH');
  return c;
}

async function expect(reply: Promise<Reply>, code: number, step: string): Promise<void> {
  const r = await reply;
  if (r.code !== code) throw new Error(`${step}: ${r.text}`);
}

/** One transaction; a refusal at any step settles the message as rejected with that reply. */
async function transact(c: RawSmtp, d: Draft, write: Writer): Promise<void> {
  for (const line of [`MAIL FROM:<${d.mailFrom}>`, ...d.entry.recipients.map((r) => `RCPT TO:<${r}>`)]) {
    const reply = await c.command(line);
    if (reply.code !== 250) {
      settle(d.entry, reply);
      await c.command('RSET');
      return;
    }
  }
  const go = await c.command('DATA');
  if (go.code !== 354) {
    settle(d.entry, go);
    return;
  }
  await write(c, d);
  settle(d.entry, await c.reply(60_000));
}

function settle(entry: Sent, reply: Reply): void {
  entry.reply = reply.text.split('\n').pop() ?? reply.text;
  entry.outcome = reply.code === 250 ? 'accepted' : 'rejected';
}

const writeWhole: Writer = (c, d) => {
  c.write(d.bytes);
  c.write('.\r\n');
  d.entry.dotSent = true;
  return Promise.resolve();
};

async function writeInPieces(c: RawSmtp, d: Draft, onHalf: (s: Sent) => void): Promise<void> {
  for (let at = 0; at < d.bytes.length; at += LARGE_PIECE_BYTES) {
    if (c.isClosed) throw new Error('connection closed mid-DATA');
    c.write(d.bytes.subarray(at, at + LARGE_PIECE_BYTES));
    if (at + LARGE_PIECE_BYTES >= d.bytes.length / 2) onHalf(d.entry);
    await sleep(LARGE_PIECE_GAP_MS);
  }
  if (c.isClosed) throw new Error('connection closed mid-DATA');
  c.write('.\r\n');
  d.entry.dotSent = true;
}

function newEntry(kind: SenderKind, subject: string, sha256: string, recipients: string[], refusable: boolean, cycle: number): Sent {
  return { kind, subject, sha256, recipients, refusable, outcome: 'unknown', reply: '', dotSent: false, cycle, attempt: 1 };
}

function mxDraft(target: TrafficTarget, cycle: number, n: number): Draft {
  const subject = `mx-c${cycle}-${n}-${randomBytes(3).toString('hex')}`;
  const refusable = n % 10 === 7;
  const size = n % 8 === 3 ? 100_000 + randomInt(100_000) : 1_000 + randomInt(20_000);
  const received = refusable ? Array.from({ length: LOOP_RECEIVED_FIELDS }, (_, i) => `Received: from hop${i}.example.org by hop${i + 1}.example.org`) : [];
  const bytes = message([...received, 'From: crash@example.org', `To: ${target.mailbox}`, `Subject: ${subject}`, `Message-ID: <${subject}@example.org>`], body(size));
  return { entry: newEntry('mx', subject, sha256(bytes), [target.mailbox], refusable, cycle), mailFrom: 'crash@example.org', bytes };
}

function largeDraft(target: TrafficTarget, cycle: number, n: number): Draft {
  const subject = `large-c${cycle}-${n}-${randomBytes(3).toString('hex')}`;
  const bytes = message(['From: crash@example.org', `To: ${target.mailbox}`, `Subject: ${subject}`, `Message-ID: <${subject}@example.org>`], body(LARGE_BYTES));
  return { entry: newEntry('large', subject, sha256(bytes), [target.mailbox], false, cycle), mailFrom: 'crash@example.org', bytes };
}

function submissionDraft(target: TrafficTarget, cycle: number, n: number): Draft {
  const subject = `sub-c${cycle}-${n}-${randomBytes(3).toString('hex')}`;
  const refusable = n % 6 === 2;
  const recipients = [`${subject}-a@${target.remoteDomain}`, ...(n % 4 === 1 ? [`${subject}-b@${target.remoteDomain}`] : [])];
  const from = refusable ? 'someone@elsewhere.example' : target.user.email;
  const text = body(500 + randomInt(6_000));
  const headers = [`From: ${from}`, `To: ${recipients.join(', ')}`, `Subject: ${subject}`, 'Date: Sat, 21 Nov 2026 06:00:00 +0000', `Message-ID: <${subject}@crash.test>`];
  return { entry: newEntry('submission', subject, sha256(text), recipients, refusable, cycle), mailFrom: target.user.email, bytes: message(headers, text) };
}

function message(headers: string[], text: Buffer): Buffer {
  return Buffer.concat([Buffer.from(`${headers.join('\r\n')}\r\n\r\n`), text]);
}

/** About `bytes` of base64 in 76-character CRLF lines, ending with CRLF. */
function body(bytes: number): Buffer {
  const b64 = randomBytes(Math.ceil((bytes * 3) / 4)).toString('base64');
  return Buffer.from(`${b64.replace(/(.{76})/g, '$1\r\n').replace(/\r\n$/, '')}\r\n`);
}

export function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function randomInt(below: number): number {
  return Math.floor(Math.random() * below);
}
