import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { MessageInspector, type InspectionReport } from '../../src/services/message-inspector.js';

async function inspect(chunks: (string | Buffer)[], max = 1_000_000): Promise<{ report: InspectionReport; out: Buffer }> {
  const inspector = new MessageInspector(max);
  const out: Buffer[] = [];
  inspector.on('data', (c: Buffer) => out.push(c));
  await new Promise<void>((resolve, reject) => {
    inspector.on('end', resolve);
    inspector.on('error', reject);
    Readable.from(chunks.map((c) => (Buffer.isBuffer(c) ? c : Buffer.from(c, 'latin1')))).pipe(inspector);
  });
  return { report: inspector.report(), out: Buffer.concat(out) };
}

describe('MessageInspector', () => {
  const cases: [string, string[], 'LF' | 'CR' | null][] = [
    ['CRLF only', ['A: b\r\n\r\nbody\r\n'], null],
    ['a bare LF', ['A: b\nC: d\r\n\r\n'], 'LF'],
    ['a bare CR', ['A: b\r\n\r\nx\ry\r\n'], 'CR'],
    ['CR at a chunk end followed by LF', ['A: b\r', '\n\r\nbody\r\n'], null],
    ['CR at a chunk end followed by text', ['A: b\r\n\r\nx\r', 'y\r\n'], 'CR'],
    ['LF at a chunk start after CR', ['A: b\r\n\r\nx\r', '\ny\r\n'], null],
    ['LF at a chunk start after text', ['A: b\r\n\r\nx', '\ny\r\n'], 'LF'],
    ['CR as the very last byte', ['A: b\r\n\r\nx\r'], 'CR'],
    ['\\n.\\n smuggling', ['A: b\r\n\r\nx\n.\nMAIL FROM:<a@b>\r\n'], 'LF'],
    ['\\r.\\r smuggling', ['A: b\r\n\r\nx\r.\rMAIL FROM:<a@b>\r\n'], 'CR'],
  ];
  for (const [name, chunks, bare] of cases) {
    it(`when the message has ${name}, then bareLineEnding is ${String(bare)}`, async () => {
      assert.equal((await inspect(chunks)).report.bareLineEnding, bare);
    });
  }

  it('when Received fields are in the header in any case, then each is counted; body lines are not', async () => {
    const msg = 'Received: a\r\nRECEIVED: b\r\nreceived:c\r\nX-Received: no\r\nSubject: Received: no\r\n\r\nReceived: body\r\n';
    assert.equal((await inspect([msg])).report.receivedCount, 3);
  });

  it('when a Received name is split across chunks, then it is still counted', async () => {
    assert.equal((await inspect(['Recei', 'ved: a\r\nRec', 'eived: b\r\n\r\n'])).report.receivedCount, 2);
  });

  it('when the message exceeds the limit, then tooLarge is set and nothing past the limit is passed on', async () => {
    const { report, out } = await inspect(['A: b\r\n\r\n', 'x'.repeat(100), 'y'.repeat(100)], 50);
    assert.equal(report.tooLarge, true);
    assert.equal(report.size, 208);
    assert.ok(out.length <= 50);
  });

  it('when the message fits, then the bytes pass through unchanged', async () => {
    const msg = 'A: b\r\n\r\n\u00e9\u0000\u00ff\r\n';
    const { out } = await inspect([msg]);
    assert.equal(out.toString('latin1'), msg);
  });
});
