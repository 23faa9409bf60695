/**
 * Named limits that are not operator settings (those live in config/schema.ts). One place, each
 * with its unit in the name and the reason for its value.
 */

/** Longest text or HTML body kept in the database for display and search; the raw blob keeps all. */
export const MAX_STORED_BODY_BYTES = 2 * 1024 * 1024;

/** Text fed to the full-text index per message (PostgreSQL tsvector is capped at 1 MB). */
export const MAX_INDEXED_TEXT_CHARS = 64 * 1024;

/** Snippet shown in message lists. */
export const SNIPPET_CHARS = 200;

/** Header lines scanned during DATA for loop detection and Message-ID; beyond this we stop counting. */
export const MAX_HEADER_BYTES = 1024 * 1024;

/** How long an SMTP callback may take before the client gets 451 4.3.0 instead of waiting. */
export const SMTP_CALLBACK_TIMEOUT_MS = 60_000;

/** How often the SMTP session-age sweep runs. */
export const SMTP_SESSION_SWEEP_MS = 1_000;

/** How long a DNS answer is cached for inbound verification (SPF, DKIM keys, DMARC). */
export const DNS_CACHE_TTL_MS = 5 * 60_000;

/** Entries kept in the DNS cache before the oldest are dropped. */
export const DNS_CACHE_MAX_ENTRIES = 10_000;

/** Keys checked per database query when the blob collector looks for unreferenced blobs. */
export const BLOB_GC_BATCH = 500;

/**
 * How often the worker folds the quota ledger into mailbox rows, and how many charges per
 * statement. Every RCPT sums its mailbox's unfolded charges, so the ledger is kept short: at
 * 900 messages/s a 5 s interval gave about 10% less throughput than 1 s (measured).
 */
export const QUOTA_FOLD_INTERVAL_MS = 1_000;
export const QUOTA_FOLD_BATCH = 5_000;

/** Default folders of every new mailbox, with their special-use role (RFC 6154). */
export const DEFAULT_FOLDERS = [
  { name: 'INBOX', specialUse: 'inbox' },
  { name: 'Sent', specialUse: 'sent' },
  { name: 'Drafts', specialUse: 'drafts' },
  { name: 'Trash', specialUse: 'trash' },
  { name: 'Junk', specialUse: 'junk' },
] as const;

/** How often an idle worker asks pg-boss for domain DNS checks (seconds; pg-boss's minimum is 0.5). */
export const DOMAIN_VERIFY_POLL_S = 1;
/** Domain DNS checks run at once per worker process (each is five lookups). */
export const DOMAIN_VERIFY_CONCURRENCY = 4;
/** Every domain is re-checked daily at this time (cron, UTC), so a removed record is noticed. */
export const DOMAIN_RECHECK_CRON = '17 3 * * *';
/** Domains queued per batch by the daily re-check. */
export const DOMAIN_RECHECK_BATCH = 500;
/** A DNS check that could not finish (DNS outage) is retried this many times, backing off from the delay. */
export const DOMAIN_VERIFY_RETRY_LIMIT = 5;
export const DOMAIN_VERIFY_RETRY_DELAY_S = 30;
/** Connections of pg-boss's own pool (job polling, sends), beside DATABASE_POOL_SIZE. */
export const JOBS_POOL_SIZE = 5;
/** How long shutdown waits for running jobs before failing them back to the queue. */
export const JOBS_STOP_TIMEOUT_MS = 10_000;

/** Largest header block of a submitted message (SMTP submission, API): 256 KiB is far beyond any real one. */
export const MAX_SUBMISSION_HEADER_BYTES = 256 * 1024;

/**
 * Delivery webhooks (SendGrid, Mailgun): a signed timestamp further than this from our clock is
 * refused as a replay. SendGrid's own guidance is minutes; 10 covers clock skew and queueing.
 */
export const WEBHOOK_MAX_AGE_MS = 10 * 60_000;
/** Signatures/tokens remembered for that window to refuse a replay; beyond this many the oldest go. */
export const WEBHOOK_REPLAY_CACHE_ENTRIES = 100_000;
/** SNS (SES events): signing certificate and SubscribeURL requests time out after this. */
export const SNS_FETCH_TIMEOUT_MS = 5_000;
/** A signing certificate larger than this is refused (AWS's are about 2 KB). */
export const SNS_CERT_MAX_BYTES = 64 * 1024;
/** Signing certificates kept, by URL (AWS uses a handful per region). */
export const SNS_CERT_CACHE_ENTRIES = 100;
