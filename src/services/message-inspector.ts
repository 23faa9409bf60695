/**
 * MessageInspector: a pass-through over the raw bytes of a message (after SMTP dot-unstuffing)
 * that checks, in one pass and without buffering the message:
 *   - size: past maxBytes it stops forwarding (nothing more is stored) but keeps consuming, so
 *     the SMTP session stays in sync and can answer 552 5.3.4;
 *   - line endings: RFC 5321 §2.3.8 allows CR and LF only as CRLF. A bare LF or bare CR is
 *     recorded (the message is rejected 550 5.5.2), which also leaves no room for SMTP smuggling
 *     variants such as `\n.\n` or `\r.\r` hiding a second message;
 *   - loops: the number of `Received:` header fields (RFC 5321 §6.3).
 * The verdict is read from `report()` after the stream ends.
 */
import { Transform, type TransformCallback } from 'node:stream';
import { MAX_HEADER_BYTES } from '../core/limits.js';

const CR = 0x0d;
const LF = 0x0a;
const RECEIVED = Buffer.from('received:');

export interface InspectionReport {
  size: number;
  tooLarge: boolean;
  bareLineEnding: 'LF' | 'CR' | null;
  receivedCount: number;
}

export class MessageInspector extends Transform {
  private size = 0;
  private tooLarge = false;
  private bare: 'LF' | 'CR' | null = null;
  private receivedCount = 0;
  /** The previous chunk ended with CR: the next chunk must start with LF. */
  private pendingCR = false;
  private lastByte = -1;
  // header scanning state
  private inHeader = true;
  private atLineStart = true;
  private lineHead = Buffer.alloc(RECEIVED.length);
  private lineHeadLen = 0;
  private blankLineCandidate = true;

  constructor(private readonly maxBytes: number) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    if (this.bare === null) this.checkLineEndings(chunk);
    if (this.inHeader) this.scanHeader(chunk);
    this.lastByte = chunk.length > 0 ? (chunk[chunk.length - 1] as number) : this.lastByte;
    this.size += chunk.length;
    if (this.tooLarge) return done();
    if (this.size > this.maxBytes) {
      this.tooLarge = true;
      return done();
    }
    done(null, chunk);
  }

  override _flush(done: TransformCallback): void {
    if (this.pendingCR && this.bare === null) this.bare = 'CR';
    done();
  }

  report(): InspectionReport {
    return { size: this.size, tooLarge: this.tooLarge, bareLineEnding: this.bare, receivedCount: this.receivedCount };
  }

  private checkLineEndings(chunk: Buffer): void {
    if (this.pendingCR) {
      if (chunk[0] !== LF) {
        this.bare = 'CR';
        return;
      }
      this.pendingCR = false;
    }
    for (let i = chunk.indexOf(LF); i !== -1; i = chunk.indexOf(LF, i + 1)) {
      const prev = i > 0 ? chunk[i - 1] : this.lastByte;
      if (prev !== CR) {
        this.bare = 'LF';
        return;
      }
    }
    for (let i = chunk.indexOf(CR); i !== -1; i = chunk.indexOf(CR, i + 1)) {
      if (i === chunk.length - 1) {
        this.pendingCR = true;
      } else if (chunk[i + 1] !== LF) {
        this.bare = 'CR';
        return;
      }
    }
  }

  /** Counts `Received:` lines in the header block; stops at the first empty line. */
  private scanHeader(chunk: Buffer): void {
    for (let i = 0; i < chunk.length; i++) {
      const byte = chunk[i] as number;
      if (byte === LF) {
        if (this.blankLineCandidate) {
          this.inHeader = false;
          return;
        }
        this.atLineStart = true;
        this.blankLineCandidate = true;
        this.lineHeadLen = 0;
        continue;
      }
      if (byte !== CR) this.blankLineCandidate = false;
      if (this.atLineStart) {
        this.lineHead[this.lineHeadLen++] = byte | 0x20; // ASCII lower case; ':' (0x3a) is unchanged
        if (this.lineHeadLen === RECEIVED.length) {
          if (this.lineHead.equals(RECEIVED)) this.receivedCount++;
          this.atLineStart = false;
        } else if (byte === 0x3a /* ':' */ || byte === 0x20 || byte === 0x09 || byte === CR) {
          this.atLineStart = false;
        }
      }
    }
    if (this.size + chunk.length > MAX_HEADER_BYTES) this.inHeader = false;
  }
}
