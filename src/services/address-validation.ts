/**
 * Address and header-text validation for mail written through the API (drafts, send-email,
 * webmail compose). Every address is checked here BEFORE nodemailer sees it: nodemailer's own
 * parser is lenient on purpose and silently turns `"a@x\r\nBcc: y@z"` or `a@x, b@y` into other
 * recipients than the caller meant, which is a header and recipient injection.
 *
 * Accepted, one address per element (RFC 5322 §3.4, a strict subset):
 *   `a@b.c`, `Name <a@b.c>`, `"Last, First" <a@b.c>` (quoted display name, `\"` and `\\` escapes).
 * Refused, each with its own message: control characters (CR, LF, NUL, ...; also U+2028/2029),
 * several addresses in one element, groups (`undisclosed:;`, `a: b@c;`), comments, source routes
 * (`@a:b@c`), address literals (`a@[1.2.3.4]`), quoted local parts (`"a@x"@y`), `@` in a display
 * name, routing characters (`%`, `!`), a missing local part or domain, a single-label domain,
 * addresses over 254 characters (RFC 5321 §4.5.3.1), and non-ASCII addresses: international
 * domain names must be written in their ASCII (xn--) form, and SMTPUTF8 local parts are not
 * supported. Display names may be any Unicode text (nodemailer encodes them, RFC 2047).
 *
 * A string value is ONE element: several recipients are an array (JSON) or a repeated form field.
 * Errors are AppError 'validation_failed' whose details name the field and the element.
 */
import { AppError } from '../core/errors.js';

export interface ParsedAddress {
  /** Display name ('' when none). */
  name: string;
  /** `local@domain`, the domain lower-cased, the local part as given. */
  address: string;
}

export interface RecipientFields {
  to?: string | string[];
  cc?: string | string[];
  bcc?: string | string[];
}

export interface ParsedRecipients {
  to: ParsedAddress[];
  cc: ParsedAddress[];
  bcc: ParsedAddress[];
  /** The envelope recipients: to + cc + bcc, each address once (compared without case). */
  envelope: string[];
}

/** RFC 5321 §4.5.3.1.3: a path is at most 256 octets with its angle brackets. */
export const MAX_ADDRESS_CHARS = 254;
const MAX_LOCAL_PART_CHARS = 64;
/** Longest element looked at (a display name plus an address); anything longer is refused unread. */
const MAX_ELEMENT_CHARS = 1000;

// C0 and C1 controls (CR, LF, NUL, TAB, ESC, DEL, NEL, ...) and the Unicode line and paragraph separators
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/u;
// header text may keep TAB (it is folding white space); nothing else
// eslint-disable-next-line no-control-regex
const HEADER_CONTROL = /[\u0000-\u0008\u000a-\u001f\u007f-\u009f\u2028\u2029]/u;
/** A dot-atom local part (RFC 5322 §3.4.1) without the routing characters % and !. */
const LOCAL_PART = /^[A-Za-z0-9#$&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9#$&'*+/=?^_`{|}~-]+)*$/;
const DOMAIN = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
/** An unquoted display name: words of letters, digits and atext, dots and spaces (RFC 5322 phrase, obs-phrase). */
const PHRASE = /^[\p{L}\p{M}\p{N}!#$%&'*+\-/=?^_`{|}~. ]+$/u;

/**
 * Parses one address field. `value` is one element or an array of them; an absent value, an
 * empty array and an empty string are no addresses. At most `maxAddresses` are accepted.
 */
export function parseAddressList(field: string, value: string | string[] | undefined, maxAddresses = Number.POSITIVE_INFINITY): ParsedAddress[] {
  if (value === undefined) return [];
  const elements = typeof value === 'string' ? (value.trim() === '' ? [] : [value]) : value;
  if (elements.length > maxAddresses) {
    throw invalid(field, null, elements[0] ?? '', `too many addresses: at most ${maxAddresses}`);
  }
  return elements.map((element, i) => parseOne(field, typeof value === 'string' ? null : i, element));
}

/** to, cc and bcc together, with the total held to `maxRecipients` (MAX_RECIPIENTS). */
export function parseRecipients(fields: RecipientFields, maxRecipients: number): ParsedRecipients {
  const to = parseAddressList('to', fields.to);
  const cc = parseAddressList('cc', fields.cc);
  const bcc = parseAddressList('bcc', fields.bcc);
  const envelope: string[] = [];
  const seen = new Set<string>();
  for (const a of [...to, ...cc, ...bcc]) {
    const key = a.address.toLowerCase();
    if (seen.has(key)) continue;
    seen.add(key);
    envelope.push(a.address);
  }
  if (envelope.length > maxRecipients) {
    throw new AppError('validation_failed', `too many recipients: ${envelope.length} in to, cc and bcc together; at most ${maxRecipients}`, {
      details: [{ in: 'body', path: 'to', message: `at most ${maxRecipients} recipients in to, cc and bcc together` }],
    });
  }
  return { to, cc, bcc, envelope };
}

/** Text that becomes a header field (subject, display names, file names): no line breaks or other controls. */
export function validateHeaderText(field: string, value: string): string {
  if (HEADER_CONTROL.test(value)) {
    throw invalid(field, null, value, 'must not contain line breaks (CR, LF), NUL or other control characters');
  }
  return value;
}

function parseOne(field: string, index: number | null, raw: string): ParsedAddress {
  const fail = (message: string): never => {
    throw invalid(field, index, raw, message);
  };
  if (typeof raw !== 'string') fail('must be a string');
  if (raw.length > MAX_ELEMENT_CHARS) fail(`is longer than ${MAX_ELEMENT_CHARS} characters`);
  if (CONTROL.test(raw)) fail('must not contain line breaks (CR, LF), NUL or other control characters');
  const element = raw.trim();
  if (element === '') fail('is empty');
  const { namePart, addressPart } = split(element, fail);
  return { name: namePart === null ? '' : displayName(namePart, fail), address: checkAddress(addressPart, fail) };
}

/**
 * Splits `Name <addr>` / `addr` on the structure outside quoted strings, refusing what would
 * make nodemailer see more than one address, a group or a comment.
 */
function split(element: string, fail: (m: string) => never): { namePart: string | null; addressPart: string } {
  let quoted = false;
  let literal = false;
  let open = -1;
  let close = -1;
  for (let i = 0; i < element.length; i++) {
    const c = element[i]!;
    if (quoted) {
      if (c === '\\') i++;
      else if (c === '"') quoted = false;
      continue;
    }
    // a domain literal ([1.2.3.4], [IPv6:::1]) is read as one piece and refused by checkAddress
    if (literal) {
      if (c === ']') literal = false;
      continue;
    }
    if (c === '"') quoted = true;
    else if (c === '[') literal = true;
    else if (c === ',') fail('holds more than one address: give one address per element (an array, or a repeated form field)');
    else if (c === '(' || c === ')') fail('comments in parentheses are not accepted');
    else if (c === '<') {
      if (open !== -1) fail('holds more than one <address>');
      open = i;
    } else if (c === '>') {
      if (open === -1 || close !== -1) fail('has an unmatched >');
      close = i;
    } else if (c === ';' || (c === ':' && open === -1)) {
      if (/^@[^:]*:/.test(element) || /<\s*@/.test(element)) fail('source routes (@host:address) are not accepted');
      fail('address groups (name: addresses;) are not accepted: list each recipient on its own');
    }
  }
  if (quoted) fail('has an unterminated quoted string');
  if (literal) fail('has an unterminated [');
  if (open === -1) {
    if (close !== -1) fail('has an unmatched >');
    return { namePart: null, addressPart: element };
  }
  if (close === -1) fail('has an unmatched <');
  if (close !== element.length - 1) fail('has text after the closing >');
  return { namePart: element.slice(0, open).trim(), addressPart: element.slice(open + 1, close).trim() };
}

function displayName(part: string, fail: (m: string) => never): string {
  if (part === '') return '';
  let name: string;
  if (part.startsWith('"')) {
    if (!part.endsWith('"') || part.length < 2) fail('has text outside the quoted display name');
    name = part.slice(1, -1).replace(/\\(.)/g, '$1');
  } else {
    if (part.includes('"')) fail('has a quote inside an unquoted display name');
    if (part.includes('@')) fail('has @ in the display name: a name must not look like an address');
    if (!PHRASE.test(part)) fail('has characters a display name may only have inside quotes ("...")');
    name = part;
  }
  if (name.includes('@')) fail('has @ in the display name: a name must not look like an address');
  return name.trim();
}

function checkAddress(raw: string, fail: (m: string) => never): string {
  if (raw === '') fail('has an empty address');
  if (raw.startsWith('@')) fail(raw.includes(':') ? 'source routes (@host:address) are not accepted' : 'is missing the local part before @');
  if (raw.includes('@[')) fail('address literals (user@[ip]) are not accepted');
  if (raw.includes(':')) fail('source routes (@host:address) are not accepted');
  if (raw.includes('"')) fail('quoted local parts ("...") are not accepted');
  if (/\s/.test(raw)) fail('has white space inside the address');
  if (raw.length > MAX_ADDRESS_CHARS) fail(`is longer than ${MAX_ADDRESS_CHARS} characters`);
  const at = raw.lastIndexOf('@');
  if (at === -1) fail('is not an email address (no @)');
  if (raw.indexOf('@') !== at) fail('has more than one @');
  const local = raw.slice(0, at);
  let domain = raw.slice(at + 1).toLowerCase();
  if (local === '') fail('is missing the local part before @');
  if (domain === '') fail('is missing the domain after @');
  if (domain.startsWith('[')) fail('address literals (user@[ip]) are not accepted');
  // eslint-disable-next-line no-control-regex
  if (/[^\x00-\x7f]/.test(domain)) fail('has an international domain name: write the domain in its ASCII form (xn--...)');
  // eslint-disable-next-line no-control-regex
  if (/[^\x00-\x7f]/.test(local)) fail('has non-ASCII characters in the local part (SMTPUTF8 addresses are not supported)');
  if (local.includes('%') || local.includes('!')) fail('has routing characters (% or !) in the local part');
  if (local.length > MAX_LOCAL_PART_CHARS) fail(`has a local part longer than ${MAX_LOCAL_PART_CHARS} characters`);
  if (!LOCAL_PART.test(local)) fail('has a local part that is not a plain dot-atom (letters, digits, .-_+ and the like)');
  if (domain.endsWith('.')) domain = domain.slice(0, -1);
  if (!DOMAIN.test(domain)) fail('has an invalid domain (it needs at least one dot and letters, digits or hyphens between)');
  return `${local}@${domain}`;
}

function invalid(field: string, index: number | null, value: string, message: string): AppError {
  const path = index === null ? field : `${field}.${index}`;
  const shown = JSON.stringify(String(value).slice(0, 120));
  return new AppError('validation_failed', `invalid ${path}: ${shown} ${message}`, {
    details: [{ in: 'body', path, message, value: shown }],
  });
}
