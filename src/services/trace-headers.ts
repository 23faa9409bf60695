/**
 * Trace header fields we add to stored mail: `Received:` (RFC 5321 §4.4, with the protocol
 * names of RFC 3848) and the RFC 5322 date they carry. Client-supplied values (HELO name,
 * reverse DNS name) are reduced to printable ASCII so they cannot inject header lines.
 */

export type Protocol = 'SMTP' | 'ESMTP' | 'ESMTPS' | 'ESMTPA' | 'ESMTPSA' | 'HTTP' | 'LOCAL';

export interface ReceivedInfo {
  hostname: string;
  helo?: string;
  clientHostname?: string;
  remoteIp?: string;
  protocol: Protocol;
  transactionId: string;
  /** Named in a `for` clause only when the copy has a single recipient (RFC 5321 §4.4). */
  recipient: string | null;
  date: Date;
}

export function receivedHeader(info: ReceivedInfo): string {
  // smtp-server reports "[ip]" as the client host name when it has no reverse DNS name
  const rdns = info.clientHostname && !info.clientHostname.startsWith('[') && info.clientHostname !== info.remoteIp ? `${safe(info.clientHostname)} ` : '';
  const from = info.remoteIp ? `from ${safe(info.helo || 'unknown')} (${rdns}[${safe(info.remoteIp)}])\r\n\t` : '';
  const forClause = info.recipient ? `\r\n\tfor <${safe(info.recipient)}>` : '';
  return `Received: ${from}by ${info.hostname} with ${info.protocol} id ${safe(info.transactionId)}${forClause};\r\n\t${formatRfc5322Date(info.date)}\r\n`;
}

/** `Sat, 21 Nov 2026 06:48:21 +0000` */
export function formatRfc5322Date(date: Date): string {
  return date.toUTCString().replace(/GMT$/, '+0000');
}

function safe(value: string): string {
  return value.replace(/[^\x21-\x7e]/g, '?');
}
