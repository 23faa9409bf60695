/**
 * A real authoritative DNS server for tests, on 127.0.0.1 with a free port: UDP, and TCP on the
 * same port for answers too large for UDP (RFC 1035 section 4.2; RFC 7766). Point DNS_SERVERS
 * (or createDnsResolver's `servers`) at `server.address` and nothing reaches a real resolver.
 *
 * Zone data is a plain map of names (case-insensitive, RFC 4343) to records of type A, AAAA,
 * CNAME, MX and TXT, changeable while the server runs. Answers follow RFC 1035 and RFC 2308:
 * NXDOMAIN for a name that does not exist, NOERROR with no answers (NODATA) for a name that exists
 * without the asked type, including empty non-terminals such as `_domainkey.example.org`
 * (RFC 8020). A TXT string longer than 255 bytes is sent as several character-strings
 * (RFC 1035 section 3.3.14; RFC 7208 section 3.3). CNAMEs are followed inside the zone.
 *
 * Every query received is recorded, so a test can assert its lookups came here; `respond()`
 * makes the server drop queries (a timeout for the client) or answer SERVFAIL.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import dnsPacket, { type Answer, type DecodedPacket, type Packet, type Question } from 'dns-packet';

export interface MxValue {
  priority: number;
  exchange: string;
}

export interface ZoneEntry {
  A?: string | string[];
  AAAA?: string | string[];
  CNAME?: string;
  MX?: MxValue | MxValue[];
  /** Each string is one TXT record; strings over 255 bytes are split into chunks on the wire. */
  TXT?: string | string[];
}

export type ZoneType = keyof ZoneEntry;
export type Zone = Record<string, ZoneEntry>;

export interface DnsQuery {
  /** The name as asked, lower-cased and without a trailing dot. */
  name: string;
  type: string;
  transport: 'udp' | 'tcp';
  /** When it arrived (ms since the epoch). */
  at: number;
}

/** answer: normal service; drop: read queries and say nothing (clients time out); servfail: RCODE 2. */
export type DnsServerMode = 'answer' | 'drop' | 'servfail';

export interface DnsServer {
  port: number;
  /** `127.0.0.1:<port>`, the form DNS_SERVERS takes. */
  address: string;
  /** Every query received, oldest first. */
  readonly queries: readonly DnsQuery[];
  /** Whether a query for `name` (and `type`, when given) was received. */
  received(name: string, type?: string): boolean;
  clearQueries(): void;
  /** Replaces the records of one type for a name (an empty list removes them). */
  set<T extends ZoneType>(name: string, type: T, values: NonNullable<ZoneEntry[T]>): void;
  /** Removes one type of a name, or the whole name. */
  remove(name: string, type?: ZoneType): void;
  respond(mode: DnsServerMode): void;
  stop(): Promise<void>;
}

const TTL_S = 300;
/** Largest UDP answer without EDNS (RFC 1035 section 2.3.4). */
const UDP_PLAIN_MAX_BYTES = 512;
const TXT_CHUNK_BYTES = 255;
const MAX_CNAME_HOPS = 8;
const RCODE_NOERROR = 0;
const RCODE_SERVFAIL = 2;
const RCODE_NXDOMAIN = 3;
const RCODE_NOTIMP = 4;

export function normalizeName(name: string): string {
  return name.toLowerCase().replace(/\.$/, '');
}

/** Splits one TXT string into character-strings of at most 255 bytes. */
export function txtChunks(value: string): Buffer[] {
  const bytes = Buffer.from(value);
  if (bytes.length === 0) return [bytes];
  const chunks: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += TXT_CHUNK_BYTES) chunks.push(bytes.subarray(i, i + TXT_CHUNK_BYTES));
  return chunks;
}

export async function startDnsServer(records: Zone = {}): Promise<DnsServer> {
  const zone = new Map<string, ZoneEntry>();
  for (const [name, entry] of Object.entries(records)) zone.set(normalizeName(name), { ...entry });
  const queries: DnsQuery[] = [];
  let mode: DnsServerMode = 'answer';

  const answer = (query: DecodedPacket, transport: 'udp' | 'tcp'): Buffer | null => {
    for (const q of query.questions ?? []) queries.push({ name: normalizeName(q.name), type: q.type, transport, at: Date.now() });
    if (mode === 'drop') return null;
    const response = buildResponse(zone, query, mode === 'servfail');
    const limit = transport === 'tcp' ? Infinity : udpLimit(query);
    const encoded = dnsPacket.encode(response);
    if (encoded.length <= limit) return encoded;
    // too big for this UDP client: header and question only, with TC set, so it retries over TCP
    return dnsPacket.encode({ ...response, flags: (response.flags ?? 0) | dnsPacket.TRUNCATED_RESPONSE, answers: [], additionals: [] });
  };

  const { udp, tcp, port } = await listenBoth(answer);
  const sockets = new Set<net.Socket>();
  let stopped: Promise<void> | null = null;
  tcp.on('connection', (s) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });

  return {
    port,
    address: `127.0.0.1:${port}`,
    queries,
    received(name, type) {
      const n = normalizeName(name);
      return queries.some((q) => q.name === n && (type === undefined || q.type === type));
    },
    clearQueries() {
      queries.length = 0;
    },
    set(name, type, values) {
      const key = normalizeName(name);
      const entry = { ...zone.get(key) };
      if (Array.isArray(values) && values.length === 0) delete entry[type];
      else entry[type] = values;
      zone.set(key, entry);
    },
    remove(name, type) {
      const key = normalizeName(name);
      if (type === undefined) {
        zone.delete(key);
        return;
      }
      const entry = zone.get(key);
      if (entry) delete entry[type];
    },
    respond(next) {
      mode = next;
    },
    stop() {
      // idempotent: a test may stop the server early to simulate an outage, and after() again
      stopped ??= (async () => {
        for (const s of sockets) s.destroy();
        await Promise.all([new Promise<void>((resolve) => udp.close(() => resolve())), new Promise<void>((resolve) => tcp.close(() => resolve()))]);
      })();
      return stopped;
    },
  };
}

function buildResponse(zone: Map<string, ZoneEntry>, query: DecodedPacket, servfail: boolean): Packet {
  const questions = query.questions ?? [];
  const base = {
    type: 'response' as const,
    id: query.id ?? 0,
    questions,
    // echo RD (a client may check it); AA: we are the authority for everything we know
    flags: dnsPacket.AUTHORITATIVE_ANSWER | (query.flag_rd ? dnsPacket.RECURSION_DESIRED : 0),
  };
  const q = questions[0];
  if (servfail) return { ...base, flags: base.flags | RCODE_SERVFAIL };
  if (!q || questions.length !== 1 || query.flag_qr) return { ...base, flags: base.flags | RCODE_NOTIMP };
  const { rcode, answers } = lookup(zone, q);
  return { ...base, flags: base.flags | rcode, answers };
}

function lookup(zone: Map<string, ZoneEntry>, q: Question): { rcode: number; answers: Answer[] } {
  const answers: Answer[] = [];
  let owner = q.name;
  for (let hop = 0; hop <= MAX_CNAME_HOPS; hop++) {
    const key = normalizeName(owner);
    const entry = zone.get(key);
    if (!entry) {
      // the first name decides NXDOMAIN; a CNAME pointing out of the zone just ends the chain
      if (hop > 0) return { rcode: RCODE_NOERROR, answers };
      return { rcode: exists(zone, key) ? RCODE_NOERROR : RCODE_NXDOMAIN, answers };
    }
    if (entry.CNAME !== undefined && q.type !== 'CNAME') {
      answers.push({ type: 'CNAME', name: owner, ttl: TTL_S, data: entry.CNAME });
      owner = entry.CNAME;
      continue;
    }
    answers.push(...recordsOf(entry, q.type, owner));
    return { rcode: RCODE_NOERROR, answers };
  }
  return { rcode: RCODE_SERVFAIL, answers: [] };
}

/** A name exists if it has records or a name below it has (an empty non-terminal; RFC 8020). */
function exists(zone: Map<string, ZoneEntry>, key: string): boolean {
  if (zone.has(key)) return true;
  const suffix = `.${key}`;
  for (const k of zone.keys()) if (k.endsWith(suffix)) return true;
  return false;
}

function recordsOf(entry: ZoneEntry, type: string, name: string): Answer[] {
  const list = <T>(v: T | T[] | undefined): T[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);
  switch (type) {
    case 'A':
      return list(entry.A).map((data) => ({ type: 'A', name, ttl: TTL_S, data }));
    case 'AAAA':
      return list(entry.AAAA).map((data) => ({ type: 'AAAA', name, ttl: TTL_S, data }));
    case 'CNAME':
      return list(entry.CNAME).map((data) => ({ type: 'CNAME', name, ttl: TTL_S, data }));
    case 'MX':
      return list(entry.MX).map((mx) => ({ type: 'MX', name, ttl: TTL_S, data: { preference: mx.priority, exchange: mx.exchange } }));
    case 'TXT':
      return list(entry.TXT).map((value) => ({ type: 'TXT', name, ttl: TTL_S, data: txtChunks(value) }));
    default:
      return [];
  }
}

/** The UDP payload the client said it takes (EDNS OPT, RFC 6891), else 512 bytes. */
function udpLimit(query: DecodedPacket): number {
  const opt = (query.additionals ?? []).find((a) => a.type === 'OPT');
  return opt && 'udpPayloadSize' in opt ? Math.max(UDP_PLAIN_MAX_BYTES, opt.udpPayloadSize) : UDP_PLAIN_MAX_BYTES;
}

type Answerer = (query: DecodedPacket, transport: 'udp' | 'tcp') => Buffer | null;

/** Binds UDP to a free port and TCP to the same one, retrying if TCP finds it taken. */
async function listenBoth(answer: Answerer): Promise<{ udp: dgram.Socket; tcp: net.Server; port: number }> {
  for (let attempt = 0; ; attempt++) {
    const udp = dgram.createSocket('udp4');
    await new Promise<void>((resolve, reject) => {
      udp.once('error', reject);
      udp.bind(0, '127.0.0.1', () => resolve());
    });
    const port = udp.address().port;
    const tcp = net.createServer((socket) => serveTcp(socket, answer));
    try {
      await new Promise<void>((resolve, reject) => {
        tcp.once('error', reject);
        tcp.listen(port, '127.0.0.1', () => resolve());
      });
    } catch (err) {
      udp.close();
      if (attempt < 10 && (err as NodeJS.ErrnoException).code === 'EADDRINUSE') continue;
      throw err;
    }
    udp.on('message', (msg, rinfo) => {
      const reply = decodeAndAnswer(msg, 'udp', answer);
      if (reply) udp.send(reply, rinfo.port, rinfo.address);
    });
    return { udp, tcp, port };
  }
}

/** DNS over TCP: each message is preceded by its length in two bytes (RFC 1035 section 4.2.2). */
function serveTcp(socket: net.Socket, answer: Answerer): void {
  let buffer = Buffer.alloc(0);
  socket.on('error', () => socket.destroy());
  socket.on('data', (chunk: Buffer) => {
    buffer = Buffer.concat([buffer, chunk]);
    while (buffer.length >= 2) {
      const len = buffer.readUInt16BE(0);
      if (buffer.length < 2 + len) return;
      const msg = buffer.subarray(2, 2 + len);
      buffer = buffer.subarray(2 + len);
      const reply = decodeAndAnswer(msg, 'tcp', answer);
      if (reply) {
        const framed = Buffer.alloc(2 + reply.length);
        framed.writeUInt16BE(reply.length, 0);
        reply.copy(framed, 2);
        socket.write(framed);
      }
    }
  });
}

function decodeAndAnswer(msg: Buffer, transport: 'udp' | 'tcp', answer: Answerer): Buffer | null {
  let query: DecodedPacket;
  try {
    query = dnsPacket.decode(msg);
  } catch {
    return null; // not DNS: a real server drops it too
  }
  return answer(query, transport);
}
