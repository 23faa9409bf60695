/**
 * LegacyHeaderCharset: a pass-through placed in front of mailparser (never in front of the blob,
 * which keeps the bytes as received). RFC 6532 allows raw UTF-8 in header fields, and mailparser
 * reads raw header bytes as UTF-8 only; but older software still writes raw 8-bit header text in
 * a legacy charset with no RFC 2047 encoding, which would then show as "Gr��e".
 *
 * It holds the top-level header block (up to MAX_HEADER_BYTES, beyond which it gives up and
 * passes the bytes on unchanged) and rewrites to UTF-8 each line that is not valid UTF-8,
 * decoding it with the charset the top-level Content-Type declares when TextDecoder knows it, or
 * else Windows-1252 (the WHATWG reading of "ISO-8859-1", and what browsers and Thunderbird fall
 * back to). Valid UTF-8 lines, the body and nested parts pass through untouched.
 */
import { isUtf8 } from 'node:buffer';
import { Transform, type TransformCallback } from 'node:stream';
import { TextDecoder } from 'node:util';
import { MAX_HEADER_BYTES } from '../core/limits.js';

const FALLBACK_CHARSET = 'windows-1252';

export class LegacyHeaderCharset extends Transform {
  private held: Buffer[] = [];
  private heldBytes = 0;
  private passing = false;
  /** Where to resume looking for the blank line (a chunk may end inside it). */
  private searchFrom = 0;

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    if (this.passing) return done(null, chunk);
    this.held.push(chunk);
    this.heldBytes += chunk.length;
    const buffered = Buffer.concat(this.held, this.heldBytes);
    const end = headerEnd(buffered, this.searchFrom);
    this.searchFrom = Math.max(0, buffered.length - 2);
    if (end === -1 && this.heldBytes <= MAX_HEADER_BYTES) return done();
    this.release(buffered, end === -1 ? 0 : end);
    done();
  }

  override _flush(done: TransformCallback): void {
    if (!this.passing) this.release(Buffer.concat(this.held, this.heldBytes), this.heldBytes);
    done();
  }

  /** Pushes the first `headerBytes` bytes, rewritten, then the rest as is. */
  private release(buffered: Buffer, headerBytes: number): void {
    this.passing = true;
    this.held = [];
    this.push(rewriteHeader(buffered.subarray(0, headerBytes)));
    if (headerBytes < buffered.length) this.push(buffered.subarray(headerBytes));
  }
}

/** Index just past the empty line that ends the header block (CRLF or LF, as mailparser reads it), or -1. */
function headerEnd(buf: Buffer, from: number): number {
  // a message with no header fields starts with the empty line
  if (from === 0 && buf[0] === 0x0a) return 1;
  if (from === 0 && buf[0] === 0x0d && buf[1] === 0x0a) return 2;
  const crlf = buf.indexOf('\n\r\n', from);
  const lf = buf.indexOf('\n\n', from);
  const ends = [crlf === -1 ? Infinity : crlf + 3, lf === -1 ? Infinity : lf + 2];
  const end = Math.min(...ends);
  return end === Infinity ? -1 : end;
}

function rewriteHeader(header: Buffer): Buffer {
  if (isUtf8(header)) return header;
  const decoder = legacyDecoder(header);
  const lines: Buffer[] = [];
  let start = 0;
  while (start < header.length) {
    const lf = header.indexOf(0x0a, start);
    const stop = lf === -1 ? header.length : lf + 1;
    const line = header.subarray(start, stop);
    lines.push(isUtf8(line) ? line : Buffer.from(decoder.decode(line), 'utf8'));
    start = stop;
  }
  return Buffer.concat(lines);
}

/** The top-level Content-Type charset when TextDecoder knows it and it is not UTF-8, else Windows-1252. */
function legacyDecoder(header: Buffer): TextDecoder {
  const unfolded = header.toString('latin1').replace(/\r?\n[ \t]+/g, ' ');
  const declared = /^content-type:[^\n]*?;\s*charset\s*=\s*"?([A-Za-z0-9_.:+-]+)/im.exec(unfolded)?.[1];
  if (declared) {
    try {
      const decoder = new TextDecoder(declared);
      if (decoder.encoding !== 'utf-8') return decoder;
    } catch (err) {
      // an unknown charset label: fall back below
      if (!(err instanceof RangeError)) throw err;
    }
  }
  return new TextDecoder(FALLBACK_CHARSET);
}
