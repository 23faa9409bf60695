/**
 * The invariants of the crash harness (crash.test.ts), checked against the server's own
 * database, blob store and the relay sink after every restart, once the outbound queue has
 * drained. Each check returns violations, each naming the message (or blob, or mailbox) and the
 * case, so one failing run shows everything that went wrong at once.
 *
 * Messages (the ledger of crash-traffic.ts against the database):
 *   - 250 → stored exactly once with the SHA-256 sent (MX), or: one submission row, one
 *     outbound row per recipient, one copy in the Sent folder (submission); an MX message sent
 *     again after a lost reply is stored once per 250 plus at most once per lost reply;
 *   - 4xx/5xx → nothing visible anywhere (mailbox, Sent, queue, sink);
 *   - reply lost to the kill → at most once, and whole when there (a submission's rows all or
 *     none); killed before the end-of-data dot → never stored;
 *   - nothing stored or relayed that the ledger does not know.
 * Queue (the sink): a recipient is relayed once, plus at most once per kill that caught its row
 *   in flight (the crash window of delivery/queue.ts; so twice when one kill caught it, and
 *   twice is the most any recipient gets unless two kills hit the same delivery), every relayed
 *   body hashes as sent, nothing relayed without a committed submission, a row marked `sent`
 *   was relayed; after a drain every queued recipient was relayed at least once.
 * Storage: blob reference counts equal the references (messages, attachments, unfinished
 *   outbound rows); mailbox usage equals the messages stored; after a collection pass with no
 *   grace, no staged file and no file without a row is left, and every stored message reads back
 *   (from its row or the store) with its hash.
 */
import path from 'node:path';
import { sql } from 'kysely';
import { readAll } from '../../src/blobs/blob-store.js';
import { LocalBlobStore } from '../../src/blobs/local.blob-store.js';
import { createLogger } from '../../src/core/logger.js';
import { createDb, type Db } from '../../src/db/database.js';
import { BlobCollector } from '../../src/services/blob-gc.service.js';
import { BlobReader } from '../../src/services/blob-reader.service.js';
import type { RelayMessage } from '../helpers/fake-relay.js';
import { describeSent, sha256, type Sent } from './crash-traffic.js';

/** The server's storage, opened from this process (the server may be running). */
export interface Storage {
  db: Db;
  store: LocalBlobStore;
  reader: BlobReader;
  close(): Promise<void>;
}

export async function openStorage(dbUrl: string, dataDir: string): Promise<Storage> {
  const { db } = createDb({ url: dbUrl, poolSize: 2, logger: createLogger('silent') });
  const store = await new LocalBlobStore(path.join(dataDir, 'blobs')).init();
  return { db, store, reader: new BlobReader(db, store), close: () => db.destroy() };
}

interface Copy {
  sha256: string;
  key: string;
}

/** What the database holds for the ledger's messages. */
export interface Snapshot {
  /** Messages in the MX traffic's mailbox, by subject. */
  inbox: Map<string, Copy[]>;
  /** Messages in the submitting user's Sent folder, by subject. */
  sentFolder: Map<string, Copy[]>;
  /** Submission rows by subject, each with its outbound rows (recipient → status). */
  submissions: Map<string, Map<string, string>[]>;
}

export async function takeSnapshot(db: Db, mailbox: string, user: string): Promise<Snapshot> {
  const copies = await sql<{ subject: string; raw_sha256: string; raw_blob_key: string; address: string; special_use: string | null }>`
    SELECT m.subject, m.raw_sha256, m.raw_blob_key, b.address, f.special_use
    FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id JOIN folders f ON f.id = m.folder_id
    WHERE b.address IN (${mailbox}, ${user})
  `.execute(db);
  const inbox = new Map<string, Copy[]>();
  const sentFolder = new Map<string, Copy[]>();
  for (const r of copies.rows) {
    const into = r.address === mailbox ? inbox : r.special_use === 'sent' ? sentFolder : null;
    if (into) push(into, r.subject, { sha256: r.raw_sha256, key: r.raw_blob_key });
  }
  const rows = await sql<{ id: string; subject: string; rcpt_to: string | null; status: string | null }>`
    SELECT s.id, s.subject, o.rcpt_to, o.status FROM submissions s LEFT JOIN outbound o ON o.submission_id = s.id WHERE s.source = 'smtp'
  `.execute(db);
  const byId = new Map<string, { subject: string; outbound: Map<string, string> }>();
  for (const r of rows.rows) {
    const sub = byId.get(r.id) ?? { subject: r.subject, outbound: new Map<string, string>() };
    byId.set(r.id, sub);
    // two rows for one recipient would be a bug: keep both visible by suffixing the second
    if (r.rcpt_to) sub.outbound.set(sub.outbound.has(r.rcpt_to) ? `${r.rcpt_to} (again)` : r.rcpt_to, r.status ?? '');
  }
  const submissions = new Map<string, Map<string, string>[]>();
  for (const sub of byId.values()) push(submissions, sub.subject, sub.outbound);
  return { inbox, sentFolder, submissions };
}

/** What reached the relay sink: per subject, per recipient, the SHA-256 of each copy's body. */
export type SinkView = Map<string, Map<string, string[]>>;

/** The Subject of a relayed copy (from its header block only: a body line could look like one). */
export function relayedSubject(m: RelayMessage): string {
  const raw = m.raw.toString('latin1');
  const split = raw.indexOf('\r\n\r\n');
  return /^Subject: (.*)$/m.exec(split < 0 ? raw : raw.slice(0, split))?.[1]?.trim() ?? '(no subject)';
}

/** `subject rcpt` of a relayed copy, the key of `caught`. */
export function deliveryKey(m: RelayMessage): string {
  return `${relayedSubject(m)} ${m.rcptTo.join(',')}`;
}

export function sinkView(messages: readonly RelayMessage[]): SinkView {
  const view: SinkView = new Map();
  for (const m of messages) {
    const subject = relayedSubject(m);
    const split = m.raw.indexOf('\r\n\r\n');
    const bodyHash = split < 0 ? '' : sha256(m.raw.subarray(split + 4));
    const byRcpt = view.get(subject) ?? new Map<string, string[]>();
    view.set(subject, byRcpt);
    for (const rcpt of m.rcptTo) byRcpt.set(rcpt, [...(byRcpt.get(rcpt) ?? []), bodyHash]);
  }
  return view;
}

export interface QueueFacts {
  /** The queue is empty: everything queued must have reached the sink. */
  drained: boolean;
  /** Per `subject rcpt`: how many kills caught its row in flight (crash-run.ts); each allows one more copy. */
  caught: ReadonlyMap<string, number>;
}

/** The ledger against the snapshot and the sink. */
export function checkMessages(ledger: readonly Sent[], snap: Snapshot, sink: SinkView, queue: QueueFacts): string[] {
  const bad: string[] = [];
  const known = new Set(ledger.map((s) => s.subject));
  const attempts = new Map<string, Sent[]>();
  for (const s of ledger) {
    if (s.kind === 'submission') checkSubmission(s, snap, sink, queue, bad);
    else push(attempts, s.subject, s);
  }
  for (const [subject, tries] of attempts) checkStored(tries, snap.inbox.get(subject) ?? [], 'in the mailbox', bad);
  for (const subject of snap.inbox.keys()) if (!known.has(subject)) bad.push(`"${subject}" is in the mailbox but was never sent`);
  for (const subject of snap.submissions.keys()) if (!known.has(subject)) bad.push(`"${subject}" is queued but was never submitted`);
  for (const subject of sink.keys()) if (!known.has(subject)) bad.push(`"${subject}" reached the sink but was never submitted`);
  return bad;
}

/**
 * A message stored as copies (MX into the mailbox, or a submission's Sent copy), over every
 * attempt that sent its bytes: each 250 is one copy, each lost reply after the dot at most one,
 * anything else none.
 */
function checkStored(tries: Sent[], copies: Copy[], where: string, bad: string[]): void {
  const what = tries.map(describeSent).join('; ');
  const accepted = tries.filter((s) => s.outcome === 'accepted').length;
  const maybe = tries.filter((s) => s.outcome === 'unknown' && s.dotSent).length;
  const n = copies.length;
  if (n < accepted) bad.push(`${what}: stored ${n} times ${where}, but got 250 ${accepted} times (a 250 means stored)`);
  if (n > accepted + maybe) {
    const why =
      accepted + maybe === 0
        ? tries.some((s) => s.outcome === 'rejected')
          ? 'refused'
          : 'its end of data was never sent'
        : `at most ${accepted + maybe} copies allowed (${accepted} × 250, ${maybe} replies lost after the dot)`;
    bad.push(`${what}: ${why}, yet stored ${n} times ${where}`);
  }
  if (tries[0]!.kind !== 'submission') {
    for (const c of copies) if (c.sha256 !== tries[0]!.sha256) bad.push(`${what}: stored ${where} with SHA-256 ${c.sha256}, sent ${tries[0]!.sha256}`);
  }
}

function checkSubmission(s: Sent, snap: Snapshot, sink: SinkView, queue: QueueFacts, bad: string[]): void {
  const what = describeSent(s);
  const subs = snap.submissions.get(s.subject) ?? [];
  checkStored([s], snap.sentFolder.get(s.subject) ?? [], 'in the Sent folder', bad);
  if (s.outcome === 'accepted' && subs.length !== 1) bad.push(`${what} has ${subs.length} submission rows (250 means exactly one)`);
  if (s.outcome !== 'accepted' && subs.length > (s.outcome === 'unknown' && s.dotSent ? 1 : 0)) bad.push(`${what} has ${subs.length} submission rows`);
  const sentCopies = snap.sentFolder.get(s.subject)?.length ?? 0;
  if (subs.length !== sentCopies) bad.push(`${what}: ${subs.length} submission rows but ${sentCopies} Sent copies (one transaction records both)`);
  for (const outbound of subs) {
    const rows = [...outbound.keys()].sort().join(', ');
    if (rows !== [...s.recipients].sort().join(', ')) bad.push(`${what} is queued for [${rows}], submitted to [${s.recipients.join(', ')}]`);
  }
  const relayed = sink.get(s.subject) ?? new Map<string, string[]>();
  for (const [rcpt, bodies] of relayed) {
    if (subs.length === 0) bad.push(`${what} reached the sink for ${rcpt} without a committed submission`);
    const caught = queue.caught.get(`${s.subject} ${rcpt}`) ?? 0;
    if (bodies.length > 1 + caught) {
      bad.push(`${what} reached the sink ${bodies.length} times for ${rcpt}, but only ${caught} kill(s) caught it in flight (one copy more each)`);
    }
    for (const h of bodies) if (h !== s.sha256) bad.push(`${what} reached the sink for ${rcpt} with body SHA-256 ${h}, sent ${s.sha256}`);
  }
  for (const outbound of subs) {
    for (const [rcpt, status] of outbound) {
      const n = relayed.get(rcpt)?.length ?? 0;
      if (status === 'sent' && n === 0) bad.push(`${what}: the row for ${rcpt} is sent but the sink never got it`);
      if (queue.drained && status !== 'sent') bad.push(`${what}: the row for ${rcpt} is still ${status} after the drain`);
      if (queue.drained && n === 0) bad.push(`${what} was queued for ${rcpt} but never reached the sink`);
    }
  }
}

/** Reference counts equal the references, and every mailbox's usage equals its messages: one statement each, so consistent snapshots. */
export async function checkAccounting(db: Db): Promise<string[]> {
  const refs = await sql<{ key: string; refcount: number; expected: number }>`
    WITH refs AS (
      SELECT raw_blob_key AS key FROM messages
      UNION ALL SELECT blob_key FROM attachments
      UNION ALL SELECT raw_blob_key FROM outbound WHERE status NOT IN ('sent', 'bounced')
    ), expected AS (SELECT key, count(*)::int AS n FROM refs GROUP BY key)
    SELECT coalesce(b.key, e.key) AS key, coalesce(b.refcount, -1) AS refcount, coalesce(e.n, 0) AS expected
    FROM blobs b FULL JOIN expected e ON e.key = b.key
    WHERE coalesce(b.refcount, -1) <> coalesce(e.n, 0)
    LIMIT 20
  `.execute(db);
  const usage = await sql<{ address: string; used: string; stored: string; counted: number; messages: number }>`
    SELECT b.address,
      (b.used_bytes + coalesce((SELECT sum(q.bytes) FROM quota_charges q WHERE q.mailbox_id = b.id), 0))::text AS used,
      coalesce((SELECT sum(m.size) FROM messages m WHERE m.mailbox_id = b.id), 0)::text AS stored,
      (b.message_count + coalesce((SELECT sum(q.messages) FROM quota_charges q WHERE q.mailbox_id = b.id), 0))::int AS counted,
      (SELECT count(*) FROM messages m WHERE m.mailbox_id = b.id)::int AS messages
    FROM mailboxes b
  `.execute(db);
  return [
    ...refs.rows.map((r) => `blob ${r.key}: refcount ${r.refcount === -1 ? '(no row)' : r.refcount}, referenced ${r.expected} times`),
    ...usage.rows
      .filter((u) => u.used !== u.stored || u.counted !== u.messages)
      .map((u) => `mailbox ${u.address}: usage ${u.used} bytes / ${u.counted} messages, stored ${u.stored} bytes / ${u.messages} messages`),
  ];
}

export interface BlobReport {
  /** Staged files (`tmp/`) before the pass: DATA cut off by a kill. */
  staged: number;
  /** Published files without a row before the pass. */
  orphans: number;
  deleted: number;
  /** Messages read back and hashed in this check. */
  read: number;
  violations: string[];
}

/**
 * One collection pass with no grace period, while nothing is being received (the caller pauses
 * the senders; the queue may still deliver, which only drops references), then: no staged file
 * and no file without a row remain, and every message in `snap` is readable with its hash. Bytes
 * are read once per message (`verified` remembers which); later checks only make sure its blob
 * row, and its file when not inline, are still there.
 */
export async function collectAndCheckBlobs(storage: Storage, snap: Snapshot, verified: Set<string>): Promise<BlobReport> {
  const before = await listFiles(storage);
  const rows = await knownKeys(storage.db, [...before.keys()]);
  const staged = [...before.keys()].filter((k) => k.startsWith('tmp/')).length;
  const orphans = [...before.keys()].filter((k) => !k.startsWith('tmp/') && !rows.has(k)).length;
  const pass = await new BlobCollector(storage.db, storage.store, 0, createLogger('silent')).collect();
  const violations: string[] = [];
  if (pass.skipped) violations.push('the collection pass was skipped');
  const after = await listFiles(storage);
  const rowsAfter = await knownKeys(storage.db, [...after.keys()]);
  for (const key of after.keys()) {
    if (key.startsWith('tmp/')) violations.push(`staged file ${key} is left after collection`);
    else if (!rowsAfter.has(key)) violations.push(`file ${key} has no row after collection`);
  }
  let read = 0;
  const copies = [...snap.inbox, ...snap.sentFolder].flatMap(([subject, cs]) => cs.map((c) => ({ subject, ...c })));
  const inline = await inlineKeys(storage.db, copies.map((c) => c.key));
  for (const c of copies) {
    if (!inline.has(c.key) && !after.has(c.key)) violations.push(`"${c.subject}": its blob ${c.key} is gone (no row data, no file)`);
    if (verified.has(c.key)) continue;
    try {
      const bytes = await readAll(await storage.reader.open(c.key));
      read++;
      if (sha256(bytes) === c.sha256) verified.add(c.key);
      else violations.push(`"${c.subject}" reads back with SHA-256 ${sha256(bytes)}, stored as ${c.sha256}`);
    } catch (err) {
      violations.push(`"${c.subject}" cannot be read back: ${(err as Error).message}`);
    }
  }
  return { staged, orphans, deleted: pass.deleted, read, violations };
}

async function listFiles(storage: Storage): Promise<Set<string>> {
  const keys = new Set<string>();
  for await (const info of storage.store.list()) keys.add(info.key);
  return keys;
}

async function knownKeys(db: Db, keys: string[]): Promise<Set<string>> {
  if (keys.length === 0) return new Set();
  const rows = await db.selectFrom('blobs').select('key').where('key', 'in', keys).execute();
  return new Set(rows.map((r) => r.key));
}

/** Keys whose row holds the bytes. */
async function inlineKeys(db: Db, keys: string[]): Promise<Set<string>> {
  if (keys.length === 0) return new Set();
  const rows = await db.selectFrom('blobs').select('key').where('key', 'in', keys).where('data', 'is not', null).execute();
  return new Set(rows.map((r) => r.key));
}

function push<T>(map: Map<string, T[]>, key: string, value: T): void {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}
