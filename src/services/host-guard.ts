/**
 * The SSRF guard for hosts a user may make the server connect to (per-user SMTP relays, SMTP
 * providers). A user-supplied relay host must not turn the mail server into a probe of its own
 * network: loopback, private (RFC 1918, RFC 4193 fc00::/7), link-local (169.254/16, fe80::/10,
 * which holds cloud metadata at 169.254.169.254 and fd00:ec2::254), CGNAT (RFC 6598 100.64/10),
 * unspecified, multicast and other special-purpose ranges (RFC 6890 registries) are refused
 * unless the operator sets ALLOW_PRIVATE_RELAY_HOSTS.
 *
 * Every spelling is normalised before the check, because a naive check is bypassed by them:
 * inet_aton forms (`2130706433`, `0x7f000001`, `0177.0.0.1`, `127.1`), bracketed IPv6, IPv4
 * embedded in IPv6 (mapped `::ffff:127.0.0.1` / `::ffff:7f00:1`, compatible `::127.0.0.1`,
 * NAT64 64:ff9b::/96, 6to4 2002::/16) and trailing-dot names. A DNS name is resolved with the
 * system resolver (all addresses) and refused if ANY address is refused, since the connection
 * could use any of them.
 *
 * resolveAllowedHost() returns the vetted IP; callers connect to that IP (TLS servername = the
 * name), so a DNS answer that changes between check and connect (DNS rebinding) cannot win.
 */
import dns from 'node:dns';
import net from 'node:net';
import { AppError } from '../core/errors.js';

export interface LookupAddress {
  address: string;
  family: number;
}

/** dns.promises.lookup with `{all: true}`; replaceable so tests can resolve through a local DNS server. */
export type HostLookup = (hostname: string) => Promise<LookupAddress[]>;

export interface HostGuardOptions {
  /** ALLOW_PRIVATE_RELAY_HOSTS: skip the range check (the host must still be well formed and resolve). */
  allowPrivate: boolean;
  lookup?: HostLookup;
}

const systemLookup: HostLookup = (hostname) => dns.promises.lookup(hostname, { all: true });

/** [network, prefix, reason] for IPv4 (RFC 6890 special-purpose registry, plus multicast). */
const REFUSED_V4: [string, number, string][] = [
  ['0.0.0.0', 8, 'an unspecified ("this network") address'],
  ['10.0.0.0', 8, 'a private address'],
  ['100.64.0.0', 10, 'a shared (CGNAT) address'],
  ['127.0.0.0', 8, 'a loopback address'],
  ['169.254.169.254', 32, 'a cloud metadata address'],
  ['169.254.0.0', 16, 'a link-local address'],
  ['172.16.0.0', 12, 'a private address'],
  ['192.0.0.0', 24, 'a reserved address'],
  ['192.0.2.0', 24, 'a reserved (documentation) address'],
  ['192.88.99.0', 24, 'a reserved (6to4 relay) address'],
  ['192.168.0.0', 16, 'a private address'],
  ['198.18.0.0', 15, 'a reserved (benchmarking) address'],
  ['198.51.100.0', 24, 'a reserved (documentation) address'],
  ['203.0.113.0', 24, 'a reserved (documentation) address'],
  ['224.0.0.0', 4, 'a multicast address'],
  ['240.0.0.0', 4, 'a reserved address'],
];

/**
 * IPv6 ranges checked after the embedded-IPv4 forms are taken apart. Anything outside global
 * unicast 2000::/3 is refused by the last rule, which covers ::, ::1, fc00::/7, fe80::/10 and ff00::/8.
 */
const REFUSED_V6: [string, number, string][] = [
  ['::', 128, 'an unspecified address'],
  ['::1', 128, 'a loopback address'],
  ['fd00:ec2::254', 128, 'a cloud metadata address'],
  ['fc00::', 7, 'a private (unique local) address'],
  ['fe80::', 10, 'a link-local address'],
  ['ff00::', 8, 'a multicast address'],
  ['2001::', 23, 'a reserved (IETF protocol assignment) address'],
  ['2001:db8::', 32, 'a reserved (documentation) address'],
  ['3fff::', 20, 'a reserved (documentation) address'],
];

function buildList(rules: [string, number, string][], family: 'ipv4' | 'ipv6'): [net.BlockList, string][] {
  return rules.map(([network, prefix, reason]) => {
    const list = new net.BlockList();
    list.addSubnet(network, prefix, family);
    return [list, reason];
  });
}

const V4_LISTS = buildList(REFUSED_V4, 'ipv4');
const V6_LISTS = buildList(REFUSED_V6, 'ipv6');
const GLOBAL_UNICAST_V6 = buildList([['2000::', 3, '']], 'ipv6')[0]![0];

/** Why an IPv4 address (dotted quad) is refused, or null when it is a public address. */
function refusalV4(address: string): string | null {
  for (const [list, reason] of V4_LISTS) if (list.check(address, 'ipv4')) return reason;
  return null;
}

/** The eight 16-bit groups of a valid IPv6 address (net.isIPv6 already true). */
export function ipv6Groups(address: string): number[] {
  let text = address;
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (dotted) {
    const [a, b, c, d] = dotted[1]!.split('.').map(Number) as [number, number, number, number];
    text = `${text.slice(0, dotted.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = text.split('::') as [string, string | undefined];
  const parse = (part: string | undefined): number[] => (part ? part.split(':').map((g) => parseInt(g, 16)) : []);
  const left = parse(head);
  const right = parse(tail);
  const zeros = tail === undefined ? [] : new Array<number>(8 - left.length - right.length).fill(0);
  return [...left, ...zeros, ...right];
}

function v4FromGroups(high: number, low: number): string {
  return [high >> 8, high & 0xff, low >> 8, low & 0xff].join('.');
}

/** The IPv4 address an IPv6 address carries (mapped, compatible, NAT64, 6to4), if any. */
function embeddedV4(groups: number[]): string | null {
  const [g0, g1, g2, g3, g4, g5, g6, g7] = groups as [number, number, number, number, number, number, number, number];
  const zeroTo4 = g0 === 0 && g1 === 0 && g2 === 0 && g3 === 0 && g4 === 0;
  if (zeroTo4 && g5 === 0xffff) return v4FromGroups(g6, g7);
  // ::a.b.c.d (deprecated "compatible"), but not :: and ::1, which are their own ranges
  if (zeroTo4 && g5 === 0 && (g6 !== 0 || g7 > 1)) return v4FromGroups(g6, g7);
  if (g0 === 0x64 && g1 === 0xff9b && g2 === 0 && g3 === 0 && g4 === 0 && g5 === 0) return v4FromGroups(g6, g7);
  if (g0 === 0x2002) return v4FromGroups(g1, g2);
  return null;
}

function refusalV6(address: string): string | null {
  const inner = embeddedV4(ipv6Groups(address));
  if (inner) {
    const reason = refusalV4(inner);
    return reason ? `${reason} (${inner} inside IPv6)` : null;
  }
  for (const [list, reason] of V6_LISTS) if (list.check(address, 'ipv6')) return reason;
  if (!GLOBAL_UNICAST_V6.check(address, 'ipv6')) return 'a reserved address';
  return null;
}

/** Why an IP address (either family, canonical text) is refused, or null when it is public. */
export function ipRefusal(address: string): string | null {
  return net.isIPv6(address) ? refusalV6(address) : refusalV4(address);
}

/** One inet_aton part: decimal, octal (leading 0) or hex (0x); NaN when malformed. */
function parseV4Part(part: string): number {
  if (/^0x[0-9a-f]*$/i.test(part)) return part.length === 2 ? 0 : parseInt(part.slice(2), 16);
  if (/^0[0-7]*$/.test(part)) return parseInt(part, 8);
  if (/^[1-9]\d*$/.test(part)) return parseInt(part, 10);
  return NaN;
}

/**
 * inet_aton(3) semantics, which getaddrinfo and URL parsers share: 1 to 4 parts, the last one
 * filling the remaining bytes (`127.1` = 127.0.0.1, `2130706433` = 127.0.0.1). Null if malformed.
 */
export function parseLooseIPv4(text: string): string | null {
  const parts = text.split('.').map(parseV4Part);
  if (parts.length > 4 || parts.some((p) => Number.isNaN(p))) return null;
  const last = parts.pop()!;
  if (parts.some((p) => p > 255) || last >= 2 ** (8 * (4 - parts.length))) return null;
  let value = last;
  parts.forEach((p, i) => {
    value += p * 2 ** (8 * (3 - i));
  });
  return [value >>> 24, (value >>> 16) & 0xff, (value >>> 8) & 0xff, value & 0xff].join('.');
}

const LABEL = /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/;
/** A last label that is a number makes the whole name an IPv4 address (as URL parsers decide). */
const NUMERIC_LABEL = /^(?:0x[0-9a-f]*|\d+)$/i;

type ParsedHost = { kind: 'ip'; address: string } | { kind: 'name'; name: string };

function invalid(host: string, why: string): AppError {
  return new AppError('validation_failed', `host "${host}" is not valid: ${why}`, { details: [{ field: 'host', host, message: why }] });
}

/** Normalises a host as typed into an IP address or a DNS name, or throws validation_failed. */
export function parseHost(host: string): ParsedHost {
  let text = host.trim().toLowerCase();
  if (text.startsWith('[') && text.endsWith(']')) text = text.slice(1, -1);
  if (text.endsWith('.')) text = text.slice(0, -1);
  if (text === '') throw invalid(host, 'it is empty');
  if (text.includes(':')) {
    if (!net.isIPv6(text) || text.includes('%')) throw invalid(host, 'not an IPv6 address');
    return { kind: 'ip', address: text };
  }
  const labels = text.split('.');
  if (NUMERIC_LABEL.test(labels[labels.length - 1]!)) {
    const address = parseLooseIPv4(text);
    if (!address) throw invalid(host, 'not an IPv4 address');
    return { kind: 'ip', address };
  }
  if (text.length > 253 || !labels.every((l) => LABEL.test(l))) throw invalid(host, 'not a host name');
  return { kind: 'name', name: text };
}

/** Whether `host` is well formed as a host name or an IP address (no DNS, no range check). */
export function isPlausibleHost(host: string): boolean {
  try {
    parseHost(host);
    return true;
  } catch {
    return false;
  }
}

function refused(host: string, address: string, reason: string): AppError {
  const what = host.trim().toLowerCase() === address ? `it is ${reason}` : `it is ${address}, ${reason}`;
  return new AppError('validation_failed', `host "${host}" is not allowed: ${what}`, {
    details: [{ field: 'host', host, address, message: `${reason} is not allowed` }],
  });
}

async function resolveName(host: string, name: string, lookup: HostLookup): Promise<string[]> {
  try {
    const found = await lookup(name);
    if (found.length === 0) throw invalid(host, 'it does not resolve to any address');
    return found.map((a) => a.address);
  } catch (err) {
    if (err instanceof AppError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOTFOUND' || code === 'ENODATA') throw invalid(host, 'it does not resolve to any address');
    throw new AppError('dns_unavailable', `cannot resolve host "${host}": ${code ?? (err as Error).message}`, { cause: err });
  }
}

/** IPv4 first: the address the connection will use must be one every test and host can reach. */
function preferred(addresses: string[]): string {
  return addresses.find((a) => net.isIPv4(a)) ?? addresses[0]!;
}

/**
 * Vets `host` and returns the IP address to connect to. Throws AppError validation_failed naming
 * the host when it is malformed, does not resolve, or is (or resolves to) a refused address;
 * dns_unavailable when the resolver itself fails.
 */
export async function resolveAllowedHost(host: string, options: HostGuardOptions): Promise<string> {
  const parsed = parseHost(host);
  const addresses = parsed.kind === 'ip' ? [parsed.address] : await resolveName(host, parsed.name, options.lookup ?? systemLookup);
  if (!options.allowPrivate) {
    for (const address of addresses) {
      const reason = ipRefusal(address);
      if (reason) throw refused(host, address, reason);
    }
  }
  return preferred(addresses);
}
