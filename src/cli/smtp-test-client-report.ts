/**
 * What the SMTP test client (src/cli/smtp-test-client.ts) reports: a Tally of per-message
 * outcomes grouped by server reply (`550 5.1.1 ×3`, keeping the first reply text of each) or by
 * connection error, latency percentiles, the final summary as text or JSON, and the progress
 * display on stderr (a bar on a terminal, one line a second when stderr is a file or a pipe, so
 * logs stay readable).
 */

/** One message's fate. A reply is the server's; an error is a failure with no SMTP reply. */
export type Outcome =
  | { kind: 'accepted'; reply: string; latencyMs: number }
  /** Accepted for some recipients; `rejections` are the RCPT TO replies of the others. */
  | { kind: 'partial'; reply: string; rejections: { stage: string; reply: string }[]; latencyMs: number }
  | { kind: 'rejected'; stage: string; reply: string; latencyMs: number }
  | { kind: 'error'; code: string; message: string; latencyMs: number };

export interface ReplyGroup {
  /** `250`, or the basic and enhanced code, e.g. `550 5.1.1`. */
  code: string;
  count: number;
  /** The SMTP command the first such reply answered (`DATA`, `RCPT TO`, `AUTH PLAIN`, ...). */
  stage: string;
  /** The first such reply's text, without its codes. */
  text: string;
}

export interface ErrorGroup {
  /** nodemailer's code (ESOCKET, ETLS, ETIMEDOUT, ECONNECTION, ...). */
  code: string;
  count: number;
  message: string;
}

export interface Summary {
  target: { host: string; port: number; tls: string; concurrency: number; rate: number; reuse: boolean };
  total: number;
  sent: number;
  accepted: number;
  failed: number;
  rejected: number;
  partiallyRejected: number;
  connectionErrors: number;
  replies: ReplyGroup[];
  errors: ErrorGroup[];
  elapsedMs: number;
  messagesPerSecond: number;
  latencyMs: { p50: number; p95: number; p99: number; max: number } | null;
}

const REPLY = /^(\d{3})(?:[ -](\d\.\d{1,3}\.\d{1,3}))?[ -]?(.*)$/s;

/** Splits `550 5.1.1 No such user` into its grouping key and text. */
export function splitReply(reply: string): { code: string; text: string } {
  const m = REPLY.exec(reply.trim());
  if (!m) return { code: '???', text: reply.trim() };
  return { code: m[2] ? `${m[1]} ${m[2]}` : m[1]!, text: m[3]!.replace(/\r?\n\d{3}[ -](\d\.\d{1,3}\.\d{1,3} )?/g, ' ').trim() };
}

/** Nearest-rank percentile of ascending `sorted` (non-empty). */
export function percentile(sorted: number[], p: number): number {
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

export class Tally {
  readonly startedAt = performance.now();
  finishedAt: number | null = null;
  sent = 0;
  accepted = 0;
  rejected = 0;
  partiallyRejected = 0;
  connectionErrors = 0;
  private readonly replies = new Map<string, ReplyGroup>();
  private readonly errors = new Map<string, ErrorGroup>();
  private readonly latencies: number[] = [];

  constructor(readonly total: number) {}

  get failed(): number {
    return this.rejected + this.partiallyRejected + this.connectionErrors;
  }

  record(outcome: Outcome): void {
    this.sent++;
    this.latencies.push(outcome.latencyMs);
    switch (outcome.kind) {
      case 'accepted':
        this.accepted++;
        this.countReply('DATA', outcome.reply);
        break;
      case 'partial':
        this.partiallyRejected++;
        this.countReply('DATA', outcome.reply);
        for (const r of outcome.rejections) this.countReply(r.stage, r.reply);
        break;
      case 'rejected':
        this.rejected++;
        this.countReply(outcome.stage, outcome.reply);
        break;
      case 'error':
        this.connectionErrors++;
        this.countError(outcome.code, outcome.message);
        break;
    }
  }

  summary(target: Summary['target']): Summary {
    const elapsedMs = (this.finishedAt ?? performance.now()) - this.startedAt;
    const sorted = [...this.latencies].sort((a, b) => a - b);
    return {
      target,
      total: this.total,
      sent: this.sent,
      accepted: this.accepted,
      failed: this.failed,
      rejected: this.rejected,
      partiallyRejected: this.partiallyRejected,
      connectionErrors: this.connectionErrors,
      replies: [...this.replies.values()].sort((a, b) => b.count - a.count),
      errors: [...this.errors.values()].sort((a, b) => b.count - a.count),
      elapsedMs: Math.round(elapsedMs),
      messagesPerSecond: elapsedMs > 0 ? round2((this.sent * 1000) / elapsedMs) : 0,
      latencyMs: sorted.length === 0 ? null : {
        p50: Math.round(percentile(sorted, 50)),
        p95: Math.round(percentile(sorted, 95)),
        p99: Math.round(percentile(sorted, 99)),
        max: Math.round(sorted[sorted.length - 1]!),
      },
    };
  }

  private countReply(stage: string, reply: string): void {
    const { code, text } = splitReply(reply);
    const group = this.replies.get(code);
    if (group) group.count++;
    else this.replies.set(code, { code, count: 1, stage, text });
  }

  private countError(code: string, message: string): void {
    const group = this.errors.get(code);
    if (group) group.count++;
    else this.errors.set(code, { code, count: 1, message });
  }
}

function round2(n: number): number {
  return Math.round(n * 100) / 100;
}

/** The human summary for stdout. */
export function formatSummary(s: Summary): string {
  const t = s.target;
  const lines = [
    `target      ${t.host}:${t.port} tls=${t.tls}, concurrency ${t.concurrency}, rate ${t.rate > 0 ? `${t.rate}/s` : 'unlimited'}, ${t.reuse ? 'connections reused' : 'one connection per message'}`,
    `sent        ${s.sent} of ${s.total}`,
    `accepted    ${s.accepted}`,
    `failed      ${s.failed} (rejected ${s.rejected}, partially rejected ${s.partiallyRejected}, connection errors ${s.connectionErrors})`,
    'replies',
    ...table(s.replies.map((r) => [r.code, `×${r.count}`, r.stage, r.text])),
    'connection errors',
    ...table(s.errors.map((e) => [e.code, `×${e.count}`, e.message])),
    `elapsed     ${(s.elapsedMs / 1000).toFixed(2)} s`,
    `throughput  ${s.messagesPerSecond.toFixed(2)} msg/s`,
    s.latencyMs ? `latency     p50 ${s.latencyMs.p50} ms, p95 ${s.latencyMs.p95} ms, p99 ${s.latencyMs.p99} ms, max ${s.latencyMs.max} ms` : 'latency     (no messages)',
  ];
  return `${lines.join('\n')}\n`;
}

/** Indented rows with every column but the last padded to its widest cell. */
function table(rows: string[][]): string[] {
  if (rows.length === 0) return ['  (none)'];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => `  ${r.map((cell, i) => (i < r.length - 1 ? cell.padEnd(widths[i]!) : cell)).join('  ')}`);
}

const BAR_WIDTH = 30;
const TTY_REFRESH_MS = 200;
const PLAIN_REFRESH_MS = 1000;

/** Progress on stderr until stop(); a redrawn bar on a terminal, a line a second otherwise. */
export class Progress {
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly tally: Tally, private readonly stream: NodeJS.WriteStream) {
    const tty = stream.isTTY === true;
    this.timer = setInterval(() => this.draw(tty), tty ? TTY_REFRESH_MS : PLAIN_REFRESH_MS);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    if (this.stream.isTTY === true) {
      this.draw(true);
      this.stream.write('\n');
    }
  }

  private draw(tty: boolean): void {
    const { sent, total, failed } = this.tally;
    const seconds = (performance.now() - this.tally.startedAt) / 1000;
    const rate = seconds > 0 ? (sent / seconds).toFixed(1) : '0.0';
    if (!tty) {
      this.stream.write(`progress: ${sent}/${total} sent, ${rate} msg/s, ${failed} failed\n`);
      return;
    }
    const filled = Math.round((sent / total) * BAR_WIDTH);
    const bar = `${'#'.repeat(filled)}${'.'.repeat(BAR_WIDTH - filled)}`;
    this.stream.write(`\r[${bar}] ${sent}/${total}  ${rate} msg/s  ${failed} failed `);
  }
}
