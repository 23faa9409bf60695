/**
 * Inbound verification: SPF (RFC 7208), DKIM (RFC 6376), DMARC (RFC 7489) and ARC (RFC 8617)
 * with mailauth, every lookup through our resolver (DNS_SERVERS). Returns the header fields to
 * put on top of the stored message (Authentication-Results, Received-SPF; RFC 8601) and a short
 * verdict per method for lists and the reading pane. A DNS failure does not stop delivery: the
 * affected method reports `temperror`, as the RFCs say.
 */
import type { Readable } from 'node:stream';
import { authenticate } from 'mailauth';
import type { DnsResolve } from './dns-resolver.js';

export type AuthVerdict = 'pass' | 'fail' | 'softfail' | 'neutral' | 'none' | 'temperror' | 'permerror' | 'policy' | 'skipped';

export interface AuthSummary {
  spf: AuthVerdict;
  dkim: AuthVerdict;
  dmarc: AuthVerdict;
  arc: AuthVerdict;
}

export interface InboundAuthResult {
  /** Header fields, CRLF-terminated, to prepend to the stored message. */
  headers: string;
  summary: AuthSummary;
}

export interface InboundAuthContext {
  ip: string;
  helo: string;
  /** MAIL FROM address; empty for the null sender. */
  sender: string;
}

export class InboundAuthService {
  constructor(
    private readonly resolver: DnsResolve,
    private readonly hostname: string,
  ) {}

  async verify(message: Readable, ctx: InboundAuthContext): Promise<InboundAuthResult> {
    const result = (await authenticate(message, {
      ip: ctx.ip,
      helo: ctx.helo,
      sender: ctx.sender,
      mta: this.hostname,
      resolver: this.resolver as never,
      disableBimi: true,
    })) as unknown as MailauthResult;
    return {
      headers: result.headers,
      summary: {
        spf: verdict(result.spf ? result.spf.status?.result : 'none'),
        dkim: dkimVerdict(result.dkim?.results ?? []),
        dmarc: verdict(result.dmarc ? result.dmarc.status?.result : 'none'),
        arc: verdict(result.arc ? result.arc.status?.result : 'none'),
      },
    };
  }
}

interface StatusHolder {
  status?: { result?: string };
}

interface MailauthResult {
  headers: string;
  spf: StatusHolder | false;
  dkim?: { results?: StatusHolder[] };
  dmarc: StatusHolder | false;
  arc: StatusHolder | false;
}

const VERDICTS: ReadonlySet<string> = new Set(['pass', 'fail', 'softfail', 'neutral', 'none', 'temperror', 'permerror', 'policy', 'skipped']);

function verdict(v: string | undefined): AuthVerdict {
  return v && VERDICTS.has(v) ? (v as AuthVerdict) : 'none';
}

/** One passing signature is enough; otherwise the first signature's result. */
function dkimVerdict(results: StatusHolder[]): AuthVerdict {
  if (results.length === 0) return 'none';
  if (results.some((r) => r.status?.result === 'pass')) return 'pass';
  return verdict(results[0]?.status?.result);
}
