/**
 * Metrics: the Prometheus metrics of one server, on its OWN prom-client Registry (never the
 * global one: tests run several servers in one process, and each must report only itself).
 * Built by the composition root (server.ts) and handed to what it instruments; those call one
 * named method each (`smtp(kind).rejected(reason)`, `deliveryRecorded(log)`, ...) and never see
 * prom-client. Served as `GET /metrics` on the API port and, when METRICS_PORT is set, by
 * core/metrics-server.ts (processes without the api role).
 *
 * Label values come from closed sets only (listener kinds, error codes, queue outcomes, route
 * kinds, DNS record keys, Express route patterns, status codes): never an address, a host or an
 * id, so the number of series stays bounded whatever the traffic.
 *
 * Gauges that describe shared state (queue depth, oldest pending age, database pool, open SMTP
 * sessions) are computed at scrape time from their source, not kept in memory, so any process
 * (an API-only one included) reports the true values and nothing can drift.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { describeError } from './errors.js';
import type { Logger } from './logger.js';

export type SmtpListenerLabel = 'mx' | 'submission' | 'smtps';

/** What one SMTP listener reports; startSmtpServer gets one per listener. */
export interface SmtpProbe {
  /** A TCP connection was accepted (before any policy check). */
  connected: () => void;
  /** A 4xx/5xx reply refused something; `reason` is an error code or a protocol reason (bounded). */
  rejected: (reason: string) => void;
  /** A DATA phase ended (whatever the outcome). */
  dataEnded: () => void;
  /** A message was committed (MX: stored in mailboxes; submission: queued for sending). */
  stored: (bytes: number) => void;
  /** Stops reporting this listener's open sessions (the listener stopped). */
  close: () => void;
}

/** Pending outbound rows by state, with the creation time of the oldest (one cheap query). */
export interface QueueStats {
  state: 'queued' | 'sending' | 'deferred';
  count: number;
  oldestAgeSeconds: number;
}

/** The pg Pool counters read at scrape time. */
export interface PoolCounts {
  totalCount: number;
  idleCount: number;
  waitingCount: number;
}

/** One entry of an outbound attempt log: the route as recorded on the row and what happened. */
export interface DeliveryLogEntry {
  route: string;
  outcome: string;
}

const QUEUE_STATES = ['queued', 'sending', 'deferred'] as const;
const HTTP_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);
const PROVIDER_KINDS: ReadonlySet<string> = new Set(['sendgrid', 'ses', 'mailgun', 'msgraph', 'smtp']);
const PLAIN_ROUTES: ReadonlySet<string> = new Set(['user-relay', 'relay', 'mx', 'local', 'none']);
/** Seconds; API calls are mostly milliseconds, uploads and searches can take seconds. */
const HTTP_BUCKETS_S = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export class Metrics {
  readonly registry = new Registry();
  private readonly sessionSources = new Map<SmtpListenerLabel, Set<() => number>>();
  private queueSource: (() => Promise<QueueStats[]>) | null = null;
  private queueScrape: Promise<QueueStats[] | null> | null = null;
  private poolSource: PoolCounts | null = null;
  private defaultsOn = false;

  private readonly smtpConnections = new Counter({
    name: 'mailserver_smtp_connections_total',
    help: 'TCP connections accepted by an SMTP listener (mx, submission, smtps), before any policy check.',
    labelNames: ['listener'],
    registers: [this.registry],
  });
  private readonly smtpRejects = new Counter({
    name: 'mailserver_smtp_rejects_total',
    help: 'SMTP 4xx/5xx replies that refused a connection, command, recipient or message, by listener and reason (an error code such as mailbox_not_found, or a protocol reason such as early_talker, max_connections, protocol_error).',
    labelNames: ['listener', 'reason'],
    registers: [this.registry],
  });
  private readonly smtpReceived = new Counter({
    name: 'mailserver_smtp_messages_received_total',
    help: 'SMTP DATA phases that ended (the message was read, whether it was then stored or refused), by listener.',
    labelNames: ['listener'],
    registers: [this.registry],
  });
  private readonly smtpStored = new Counter({
    name: 'mailserver_smtp_messages_stored_total',
    help: 'Messages committed after DATA (answered 250): mx = stored in the mailboxes, submission/smtps = queued for sending.',
    labelNames: ['listener'],
    registers: [this.registry],
  });
  private readonly smtpStoredBytes = new Counter({
    name: 'mailserver_smtp_stored_bytes_total',
    help: 'Bytes of the messages counted in mailserver_smtp_messages_stored_total, as received (before our trace headers).',
    labelNames: ['listener'],
    registers: [this.registry],
  });
  private readonly outboundDeliveries = new Counter({
    name: 'mailserver_outbound_deliveries_total',
    help: 'Outbound delivery attempts per recipient, by route (user-relay, provider:<type>, relay, mx, local, none) and outcome (sent, deferred, bounced; fallback = the route was unusable and the next one was tried).',
    labelNames: ['route', 'outcome'],
    registers: [this.registry],
  });
  private readonly dnsChecks = new Counter({
    name: 'mailserver_dns_checks_total',
    help: 'Domain DNS record checks, by record (mx, spf, dkim, dmarc, verification) and result (ok, missing, mismatch, error).',
    labelNames: ['record', 'result'],
    registers: [this.registry],
  });
  private readonly domainVerifications = new Counter({
    name: 'mailserver_domain_verifications_total',
    help: 'Domain verification runs by DNS verdict (verified, failed, inconclusive = DNS did not answer, retried).',
    labelNames: ['outcome'],
    registers: [this.registry],
  });
  private readonly httpDuration = new Histogram({
    name: 'mailserver_http_request_duration_seconds',
    help: 'API/webmail HTTP request duration, by method, route pattern (e.g. /api/users/:id; unmatched = no route; static = webmail files) and status code.',
    labelNames: ['method', 'route', 'status'],
    buckets: HTTP_BUCKETS_S,
    registers: [this.registry],
  });

  constructor(private readonly logger: Logger) {
    const sessions = this.sessionSources;
    new Gauge({
      name: 'mailserver_smtp_sessions_open',
      help: 'SMTP connections open now, by listener.',
      labelNames: ['listener'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const [listener, sources] of sessions) {
          let open = 0;
          for (const count of sources) open += count();
          this.set({ listener }, open);
        }
      },
    });
    // the pool first: read before the queue query of this same scrape takes a connection
    this.poolGauges();
    this.queueGauges();
  }

  /** nodejs_* and process_* (event-loop lag, heap, GC, CPU, file descriptors) on this registry; once. */
  collectDefaults(): void {
    if (this.defaultsOn) return;
    this.defaultsOn = true;
    collectDefaultMetrics({ register: this.registry });
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** The exposition text (Prometheus text format 0.0.4). */
  render(): Promise<string> {
    return this.registry.metrics();
  }

  /** The probe of one SMTP listener; `openSessions` is read at scrape time. */
  smtp(listener: SmtpListenerLabel, openSessions: () => number): SmtpProbe {
    const labels = { listener };
    // zero samples from the start, so rate() sees the first message
    for (const c of [this.smtpConnections, this.smtpReceived, this.smtpStored, this.smtpStoredBytes]) c.inc(labels, 0);
    let sources = this.sessionSources.get(listener);
    if (!sources) this.sessionSources.set(listener, (sources = new Set()));
    sources.add(openSessions);
    return {
      connected: () => this.smtpConnections.inc(labels),
      rejected: (reason) => this.smtpRejects.inc({ listener, reason }),
      dataEnded: () => this.smtpReceived.inc(labels),
      stored: (bytes) => {
        this.smtpStored.inc(labels);
        if (bytes > 0) this.smtpStoredBytes.inc(labels, bytes);
      },
      close: () => void sources.delete(openSessions),
    };
  }

  /** The outcome of one delivery attempt was recorded: its fallbacks and its final outcome. */
  deliveryRecorded(log: readonly DeliveryLogEntry[]): void {
    for (const entry of log) this.outboundDeliveries.inc({ route: routeLabel(entry.route), outcome: entry.outcome });
  }

  /** One domain's DNS check: a result per record and the verdict. */
  domainChecked(records: Readonly<Record<string, { status: string }>>, outcome: string): void {
    for (const [record, check] of Object.entries(records)) this.dnsChecks.inc({ record, result: check.status });
    this.domainVerifications.inc({ outcome });
  }

  /** One HTTP request finished; `route` is already a pattern (see api/middleware/metrics.ts). */
  httpRequest(method: string, route: string, status: number, seconds: number): void {
    this.httpDuration.observe({ method: HTTP_METHODS.has(method) ? method : 'OTHER', route, status: String(status) }, seconds);
  }

  /** Where the queue gauges come from (one query per scrape). */
  watchQueue(source: () => Promise<QueueStats[]>): void {
    this.queueSource = source;
  }

  watchPool(pool: PoolCounts): void {
    this.poolSource = pool;
  }

  private queueGauges(): void {
    const scrape = (): Promise<QueueStats[] | null> => this.scrapeQueue();
    new Gauge({
      name: 'mailserver_outbound_queue_depth',
      help: 'Outbound recipients not yet finished, by state (queued, sending, deferred); read from the database at scrape time.',
      labelNames: ['state'],
      registers: [this.registry],
      async collect() {
        const stats = await scrape();
        this.reset();
        if (!stats) return;
        for (const state of QUEUE_STATES) this.set({ state }, stats.find((s) => s.state === state)?.count ?? 0);
      },
    });
    new Gauge({
      name: 'mailserver_outbound_queue_oldest_age_seconds',
      help: 'Age of the oldest unfinished outbound recipient (0 when the queue is empty); read from the database at scrape time.',
      registers: [this.registry],
      async collect() {
        const stats = await scrape();
        this.reset();
        if (!stats) return;
        this.set(Math.max(0, ...stats.map((s) => s.oldestAgeSeconds)));
      },
    });
  }

  /**
   * Both queue gauges share one query: the registry collects all metrics concurrently, so the
   * second collect() finds the first one's query still in flight. A failing query (database down)
   * leaves both gauges without samples rather than failing the whole scrape.
   */
  private scrapeQueue(): Promise<QueueStats[] | null> {
    if (!this.queueSource) return Promise.resolve(null);
    if (!this.queueScrape) {
      this.queueScrape = this.queueSource()
        .catch((err: unknown) => {
          this.logger.warn({ err: describeError(err) }, 'metrics: could not read the outbound queue');
          return null;
        })
        .finally(() => {
          this.queueScrape = null;
        });
    }
    return this.queueScrape;
  }

  private poolGauges(): void {
    const pool = (): PoolCounts | null => this.poolSource;
    new Gauge({
      name: 'mailserver_db_pool_connections',
      help: 'Connections of the database pool, by state (total = open, idle = open and unused).',
      labelNames: ['state'],
      registers: [this.registry],
      collect() {
        const p = pool();
        this.reset();
        if (!p) return;
        this.set({ state: 'total' }, p.totalCount);
        this.set({ state: 'idle' }, p.idleCount);
      },
    });
    new Gauge({
      name: 'mailserver_db_pool_waiting',
      help: 'Queries waiting for a database connection (the pool is exhausted when this stays above 0).',
      registers: [this.registry],
      collect() {
        const p = pool();
        this.reset();
        if (p) this.set(p.waitingCount);
      },
    });
  }
}

/**
 * The route recorded on an outbound row, reduced to its kind: `provider:sendgrid:<tenant's name>`
 * becomes `provider:sendgrid` (names are the tenants' own words, unbounded).
 */
export function routeLabel(route: string): string {
  if (PLAIN_ROUTES.has(route)) return route;
  const [head, type] = route.split(':');
  if (head === 'provider') return type && PROVIDER_KINDS.has(type) ? `provider:${type}` : 'provider';
  return 'other';
}
