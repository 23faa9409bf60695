/**
 * LegacyHeaderCharset (src/services/legacy-header-charset.ts): raw 8-bit header lines that are
 * not UTF-8 are re-decoded before mailparser sees them; everything else passes byte for byte,
 * however the input is split into chunks.
 */
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { MAX_HEADER_BYTES } from '../../src/core/limits.js';
import { LegacyHeaderCharset } from '../../src/services/legacy-header-charset.js';

const latin1 = (s: string): Buffer => Buffer.from(s, 'latin1');

async function run(input: Buffer, chunkBytes: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for (let i = 0; i < input.length; i += chunkBytes) chunks.push(input.subarray(i, i + chunkBytes));
  const out: Buffer[] = [];
  for await (const c of Readable.from(chunks).pipe(new LegacyHeaderCharset())) out.push(c as Buffer);
  return Buffer.concat(out);
}

/** [when, then, input, expected output] */
const cases: [string, string, Buffer, Buffer][] = [
  ['the header is UTF-8', 'it passes unchanged', Buffer.from('Subject: Grüße\r\n\r\nbody'), Buffer.from('Subject: Grüße\r\n\r\nbody')],
  [
    'a header line is raw Latin-1 and no charset is declared',
    'it is read as Windows-1252 and the body is untouched',
    latin1('Subject: Gr\xfc\xdfe \x80\r\nTo: a@b.test\r\n\r\nK\xf6ln'),
    Buffer.concat([Buffer.from('Subject: Grüße €\r\nTo: a@b.test\r\n\r\n'), latin1('K\xf6ln')]),
  ],
  [
    'the message declares a legacy charset (folded parameter)',
    'the raw header text is read in that charset',
    latin1('Subject: \xf0\xf2\xe9\r\nContent-Type: text/plain;\r\n charset="koi8-r"\r\n\r\nb'),
    Buffer.from('Subject: ПРИ\r\nContent-Type: text/plain;\r\n charset="koi8-r"\r\n\r\nb'),
  ],
  [
    'the message declares UTF-8 but a header line is not',
    'that line is read as Windows-1252',
    latin1('Content-Type: text/plain; charset=utf-8\r\nSubject: caf\xe9\r\n\r\nb'),
    Buffer.from('Content-Type: text/plain; charset=utf-8\r\nSubject: café\r\n\r\nb'),
  ],
  [
    'the declared charset is unknown',
    'Windows-1252 is used',
    latin1('Content-Type: text/plain; charset=bogus\r\nSubject: caf\xe9\r\n\r\n'),
    Buffer.from('Content-Type: text/plain; charset=bogus\r\nSubject: café\r\n\r\n'),
  ],
  [
    'one line is UTF-8 and another Latin-1',
    'only the Latin-1 line is rewritten',
    latin1('Subject: caf\xc3\xa9\r\nFrom: Andr\xe9 <a@b.test>\r\n\r\n'),
    Buffer.from('Subject: café\r\nFrom: André <a@b.test>\r\n\r\n'),
  ],
  ['the message has no header fields', 'it passes unchanged', latin1('\r\nSubject: caf\xe9'), latin1('\r\nSubject: caf\xe9')],
  ['the input ends inside the header block', 'what was held is rewritten and passed on', latin1('Subject: caf\xe9'), Buffer.from('Subject: café')],
];

describe('LegacyHeaderCharset', () => {
  for (const [when, then, input, expected] of cases) {
    it(`when ${when}, then ${then}, however the input is chunked`, async () => {
      for (const size of [1, 2, 3, 7, 1 << 16]) {
        const out = await run(input, size);
        assert.ok(out.equals(expected), `chunks of ${size}: ${JSON.stringify(out.toString('latin1'))}`);
      }
    });
  }

  it('when the header block exceeds MAX_HEADER_BYTES without ending, then the bytes pass through unchanged', async () => {
    const input = Buffer.concat([latin1('Subject: caf\xe9\r\n'), Buffer.alloc(2 * MAX_HEADER_BYTES, 'x'), latin1('\r\n\r\nb\xe9')]);
    assert.ok((await run(input, 64 * 1024)).equals(input));
  });
});
