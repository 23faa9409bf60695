/**
 * Sending through the API over real HTTP against the real server (embedded PostgreSQL, no worker
 * role, so queued mail stays queued and nothing leaves 127.0.0.1): /api/mails drafts with
 * multipart attachments (FormData and a hand-built curl-style body), sending and deleting them,
 * /api/messages/send-email, webmail compose (draft and send, replies, attachments of drafts),
 * header and recipient injection (400 with nothing stored or queued), upload limits (413/400
 * JSON), sender rules (403), users without a mailbox (403) and isolation between users and
 * tenants (404).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestServer, type TestServer } from '../helpers/harness.js';
import { call, type ApiResponse } from '../helpers/http.js';
import { UNTHROTTLED_ENV, usersApi, type ApiTenant } from '../helpers/users-api.js';

const MAX_MESSAGE_SIZE = 300_000;
const MAX_ATTACHMENTS = 3;

interface MailBody {
  id: string;
  status: string;
  source: string;
  from: string;
  to: string[];
  cc: string[];
  bcc: string[];
  subject: string;
  text: string | null;
  html: string | null;
  message_id: string | null;
  stored_message_id: string | null;
  attachments: { id: string; filename: string; content_type: string; size: number }[];
  recipients: { address: string; status: string; attempts: number; events: unknown[] }[];
  code?: string;
  error?: string;
  details?: { path: string; message: string }[];
}

interface Writer {
  token: string;
  address: string;
  userId: string;
  mailboxId: string;
}

let t: TestServer;
let h: ReturnType<typeof usersApi>;
let a: ApiTenant;
let b: ApiTenant;
let alice: Writer;
let amy: Writer;
let bob: Writer;

before(async () => {
  t = await startTestServer({ ...UNTHROTTLED_ENV, MAX_MESSAGE_SIZE: String(MAX_MESSAGE_SIZE), MAX_ATTACHMENTS: String(MAX_ATTACHMENTS), MAX_RECIPIENTS: '5' });
  h = usersApi(t);
  a = await h.newTenant('senda');
  b = await h.newTenant('sendb');
  await t.services.db.updateTable('domains').set({ status: 'verified', verified_at: new Date() }).where('name', '=', a.domain).execute();
  alice = await writer(a, 'Alice Example');
  amy = await writer(a);
  bob = await writer(b); // tenant b's domain stays unverified
});

after(async () => {
  await t?.stop();
});

async function writer(tenant: ApiTenant, name?: string): Promise<Writer> {
  const { user, token } = await h.userWithToken(tenant, 'member');
  if (name) await t.services.db.updateTable('users').set({ name }).where('id', '=', user.id).execute();
  return { token, address: user.email, userId: user.id, mailboxId: user.mailbox!.id };
}

const api = <T = MailBody>(method: string, path: string, token: string, body?: unknown): Promise<ApiResponse<T>> => call<T>(t.apiPort, method, path, { token, body });

async function postForm(path: string, token: string, form: FormData): Promise<ApiResponse<MailBody>> {
  const res = await fetch(`http://127.0.0.1:${t.apiPort}${path}`, { method: 'POST', headers: { authorization: `Bearer ${token}` }, body: form });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: JSON.parse(text) as MailBody, text };
}

/** A multipart body written out by hand, as curl sends it. */
async function postRaw(path: string, token: string, parts: { name: string; value: string; filenameHeader?: string; type?: string }[]): Promise<ApiResponse<MailBody>> {
  const boundary = '------------------------curl7MA4YWxkTrZu0gW';
  const body =
    parts
      .map((p) => {
        const disposition = `Content-Disposition: form-data; name="${p.name}"${p.filenameHeader ? `; ${p.filenameHeader}` : ''}`;
        return `--${boundary}\r\n${disposition}\r\n${p.type ? `Content-Type: ${p.type}\r\n` : ''}\r\n${p.value}\r\n`;
      })
      .join('') + `--${boundary}--\r\n`;
  return call<MailBody>(t.apiPort, 'POST', path, { token, rawBody: body, headers: { 'content-type': `multipart/form-data; boundary=${boundary}` } });
}

function form(fields: Record<string, string | string[]>, files: { field?: string; name: string; bytes: Uint8Array; type?: string }[] = []): FormData {
  const f = new FormData();
  for (const [k, v] of Object.entries(fields)) for (const one of Array.isArray(v) ? v : [v]) f.append(k, one);
  for (const file of files) f.append(file.field ?? 'attachments', new Blob([file.bytes], { type: file.type ?? 'application/octet-stream' }), file.name);
  return f;
}

/** Rows that a refused request must not have created. */
async function counts(): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const table of ['submissions', 'outbound', 'messages', 'attachments'] as const) {
    const row = await t.services.db.selectFrom(table).select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
    out[table] = Number(row.n);
  }
  return out;
}

async function folderMessages(mailboxId: string, folder: 'drafts' | 'sent'): Promise<{ id: string; seen: boolean; draft: boolean }[]> {
  return t.services.db
    .selectFrom('messages')
    .innerJoin('folders', 'folders.id', 'messages.folder_id')
    .select(['messages.id', 'messages.seen', 'messages.draft'])
    .where('messages.mailbox_id', '=', mailboxId)
    .where('folders.special_use', '=', folder)
    .execute();
}

async function rawOf(messageId: string): Promise<string> {
  const { message } = await t.services.messages.getMessage(messageId);
  const stream = await t.services.messages.openRaw(message);
  return Buffer.concat((await stream.toArray()) as Buffer[]).toString('latin1');
}

function headerBlock(raw: string): string {
  return raw.slice(0, raw.indexOf('\r\n\r\n'));
}

async function quotaCharged(mailboxId: string): Promise<number> {
  const row = await t.services.db
    .selectFrom('quota_charges')
    .select((eb) => eb.fn.coalesce(eb.fn.sum<number>('bytes'), eb.lit(0)).as('n'))
    .where('mailbox_id', '=', mailboxId)
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

const binary = Uint8Array.from({ length: 256 * 40 }, (_, i) => i % 256);
const textFile = new TextEncoder().encode('first line\nsecond line\r\nthird\n');

describe('drafts with attachments (/api/mails)', () => {
  let draft: MailBody;

  it('when a draft with two attachments is posted as multipart, then 201 and it is kept in Drafts with the attachments', async () => {
    const res = await postForm(
      '/api/mails',
      alice.token,
      form(
        { to: ['Bob Remote <bob@remote.invalid>', '"Last, First" <first@remote.invalid>'], cc: 'carol@remote.invalid', bcc: 'hidden@remote.invalid', subject: 'Quarterly figures ✓', text: 'See attached.\nThanks', html: '<p>See attached.</p>' },
        [
          { name: 'figures.bin', bytes: binary },
          { name: 'notes é.txt', bytes: textFile, type: 'text/plain' },
        ],
      ),
    );
    assert.equal(res.status, 201, res.text);
    draft = res.body;
    assert.equal(draft.status, 'draft');
    assert.equal(draft.from, alice.address);
    assert.deepEqual(draft.to, ['bob@remote.invalid', 'first@remote.invalid']);
    assert.deepEqual(draft.bcc, ['hidden@remote.invalid']);
    // FormData sends text fields with CRLF line breaks (HTML form submission rules)
    assert.equal(draft.text?.replace(/\r\n/g, '\n'), 'See attached.\nThanks');
    assert.deepEqual(
      draft.attachments.map((x) => [x.filename, x.size]),
      [
        ['figures.bin', binary.length],
        ['notes é.txt', textFile.length],
      ],
    );
    assert.deepEqual(draft.recipients, []);
    const drafts = await folderMessages(alice.mailboxId, 'drafts');
    assert.deepEqual(drafts, [{ id: draft.stored_message_id, seen: true, draft: true }]);
    const raw = await rawOf(draft.stored_message_id!);
    assert.doesNotMatch(headerBlock(raw), /^bcc:/im, 'no Bcc header in the stored draft');
    assert.match(headerBlock(raw), /^From: Alice Example </m);
    assert.match(headerBlock(raw), new RegExp(`^Message-ID: <[0-9a-f-]+@${a.domain.replace(/\./g, '\\.')}>`, 'm'));
    assert.doesNotMatch(raw, /[^\r]\n|\r[^\n]/, 'CRLF line endings only');
  });

  it('when the attachments are downloaded, then the bytes are the ones uploaded', async () => {
    const expected = [binary, textFile];
    for (const [i, att] of draft.attachments.entries()) {
      const res = await fetch(`http://127.0.0.1:${t.apiPort}/api/mails/${draft.id}/attachments/${att.id}`, { headers: { authorization: `Bearer ${alice.token}` } });
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-disposition') ?? '', /^attachment;/);
      assert.deepEqual(new Uint8Array(await res.arrayBuffer()), expected[i]);
    }
  });

  it('when the draft is read back and listed, then it shows its fields', async () => {
    const got = await api('GET', `/api/mails/${draft.id}`, alice.token);
    assert.equal(got.status, 200);
    assert.deepEqual(got.body, draft);
    const list = await api<{ data: MailBody[]; next_cursor: string | null }>('GET', '/api/mails', alice.token);
    assert.equal(list.status, 200);
    assert.ok(list.body.data.some((m) => m.id === draft.id && m.status === 'draft'));
  });

  it('when the draft is sent, then 202 queued, one outbound row per recipient, a Sent copy without Bcc and no Drafts copy', async () => {
    const before = await quotaCharged(alice.mailboxId);
    const draftSize = Number((await t.services.db.selectFrom('messages').select('size').where('id', '=', draft.stored_message_id).executeTakeFirstOrThrow()).size);
    const res = await api<{ id: string; status: string }>('POST', `/api/mails/${draft.id}/send`, alice.token);
    assert.equal(res.status, 202, res.text);
    assert.equal(res.body.id, draft.id);
    assert.equal(res.body.status, 'queued');
    const outbound = await t.services.db.selectFrom('outbound').select(['rcpt_to', 'status']).where('submission_id', '=', draft.id).orderBy('rcpt_to').execute();
    assert.deepEqual(
      outbound.map((o) => `${o.rcpt_to}:${o.status}`),
      ['bob@remote.invalid:queued', 'carol@remote.invalid:queued', 'first@remote.invalid:queued', 'hidden@remote.invalid:queued'],
    );
    assert.deepEqual(await folderMessages(alice.mailboxId, 'drafts'), []);
    const sent = await folderMessages(alice.mailboxId, 'sent');
    assert.equal(sent.length, 1);
    const raw = await rawOf(sent[0]!.id);
    assert.doesNotMatch(headerBlock(raw), /^bcc:/im);
    assert.match(headerBlock(raw), /^Date: /m);
    assert.ok(raw.includes('figures.bin') && raw.includes(Buffer.from(binary).toString('base64').slice(0, 76)));
    const sentSize = Number((await t.services.db.selectFrom('messages').select('size').where('id', '=', sent[0]!.id).executeTakeFirstOrThrow()).size);
    assert.equal(await quotaCharged(alice.mailboxId), before - draftSize + sentSize, 'the Drafts copy was un-charged');

    const got = await api('GET', `/api/mails/${draft.id}`, alice.token);
    assert.equal(got.body.status, 'submitted');
    assert.equal(got.body.stored_message_id, sent[0]!.id);
    assert.equal(got.body.recipients.length, 4);
    assert.ok(got.body.recipients.every((r) => r.status === 'queued' && r.attempts === 0 && Array.isArray(r.events)));
    assert.equal(got.body.attachments.length, 2);
  });

  it('when a sent mail is sent again or deleted, then 409', async () => {
    assert.equal((await api('POST', `/api/mails/${draft.id}/send`, alice.token)).status, 409);
    const del = await api('DELETE', `/api/mails/${draft.id}`, alice.token);
    assert.equal(del.status, 409);
    assert.equal(del.body.code, 'conflict');
  });

  it('when a draft is deleted, then its row and Drafts copy go and the quota and blob references are released', async () => {
    const before = await quotaCharged(amy.mailboxId);
    const res = await postForm('/api/mails', amy.token, form({ to: 'x@remote.invalid', subject: 'to delete' }, [{ name: 'a.bin', bytes: binary.slice(0, 1000) }]));
    assert.equal(res.status, 201, res.text);
    const stored = await t.services.db.selectFrom('messages').select(['raw_blob_key']).where('id', '=', res.body.stored_message_id).executeTakeFirstOrThrow();
    const del = await api('DELETE', `/api/mails/${res.body.id}`, amy.token);
    assert.equal(del.status, 204);
    assert.equal((await api('GET', `/api/mails/${res.body.id}`, amy.token)).status, 404);
    assert.deepEqual(await folderMessages(amy.mailboxId, 'drafts'), []);
    assert.equal(await quotaCharged(amy.mailboxId), before);
    const blob = await t.services.db.selectFrom('blobs').select('refcount').where('key', '=', stored.raw_blob_key).executeTakeFirstOrThrow();
    assert.equal(blob.refcount, 0);
  });

  it('when a curl-style multipart body is built by hand, then it is accepted like a browser form', async () => {
    const res = await postRaw('/api/mails', amy.token, [
      { name: 'to', value: 'one@remote.invalid' },
      { name: 'to', value: 'two@remote.invalid' },
      { name: 'subject', value: 'from curl' },
      { name: 'attachments[]', filenameHeader: 'filename="hello.txt"', type: 'text/plain', value: 'hello world' },
    ]);
    const body = res.body;
    assert.equal(res.status, 201, res.text);
    assert.deepEqual(body.to, ['one@remote.invalid', 'two@remote.invalid']);
    assert.deepEqual(
      body.attachments.map((x) => [x.filename, x.content_type, x.size]),
      [['hello.txt', 'text/plain', 11]],
    );
  });
});

describe('refused input changes nothing', () => {
  const injections: [string, Record<string, unknown>][] = [
    ['CRLF Bcc injection in to', { to: 'a@remote.invalid\r\nBcc: y@remote.invalid', subject: 's' }],
    ['LF injection in an array element', { to: ['ok@remote.invalid', 'a@remote.invalid\nBcc: y@remote.invalid'], subject: 's' }],
    ['two addresses in one element', { to: 'a@remote.invalid, b@remote.invalid', subject: 's' }],
    ['a group', { to: 'undisclosed-recipients:;', subject: 's' }],
    ['a group with members in cc', { to: 'a@remote.invalid', cc: 'team: b@remote.invalid, c@remote.invalid;', subject: 's' }],
    ['NUL in an address', { to: 'a@remote.invalid\u0000', subject: 's' }],
    ['a quoted local part in bcc', { to: 'a@remote.invalid', bcc: '"x@evil.invalid"@remote.invalid', subject: 's' }],
    ['a source route', { to: '@relay.invalid:a@remote.invalid', subject: 's' }],
    ['an address literal', { to: 'a@[127.0.0.1]', subject: 's' }],
    ['CRLF in the subject', { to: 'a@remote.invalid', subject: 'hello\r\nBcc: y@remote.invalid' }],
    ['more than MAX_RECIPIENTS', { to: ['1@r.invalid', '2@r.invalid', '3@r.invalid'], cc: ['4@r.invalid', '5@r.invalid'], bcc: '6@r.invalid', subject: 's' }],
    ['an unknown field', { to: 'a@remote.invalid', subject: 's', headers: { Bcc: 'y@remote.invalid' } }],
  ];
  for (const [label, body] of injections) {
    it(`when send-email gets ${label}, then 400 and nothing is stored or queued`, async () => {
      const before = await counts();
      const res = await api('POST', '/api/messages/send-email', alice.token, body);
      assert.equal(res.status, 400, res.text);
      assert.equal(res.body.code, 'validation_failed');
      assert.ok(Array.isArray(res.body.details) && res.body.details.length > 0);
      assert.deepEqual(await counts(), before);
    });
  }

  it('when there is no recipient, then sending is 400 and a draft without recipients stays a draft', async () => {
    const before = await counts();
    const none = await api('POST', '/api/messages/send-email', alice.token, { to: [], subject: 's', text: 't' });
    assert.equal(none.status, 400, none.text);
    assert.match(none.body.error!, /no recipients/);
    assert.deepEqual(await counts(), before);
    const draft = await postForm('/api/mails', amy.token, form({ subject: 'nobody yet' }));
    assert.equal(draft.status, 201, draft.text);
    const send = await api('POST', `/api/mails/${draft.body.id}/send`, amy.token);
    assert.equal(send.status, 400, send.text);
    assert.equal((await api('GET', `/api/mails/${draft.body.id}`, amy.token)).body.status, 'draft');
    assert.equal((await api('DELETE', `/api/mails/${draft.body.id}`, amy.token)).status, 204);
  });

  it('when a multipart draft has CRLF in to, subject or from, or a control character in a file name, then 400 and nothing is stored', async () => {
    const before = await counts();
    const bad = [
      form({ to: 'a@remote.invalid\r\nBcc: y@remote.invalid' }),
      form({ to: 'a@remote.invalid', subject: 'x\r\nBcc: y@remote.invalid' }),
      form({ from: `${alice.address}\r\nBcc: y@remote.invalid`, to: 'a@remote.invalid' }),
    ];
    for (const f of bad) {
      const res = await postForm('/api/mails', alice.token, f);
      assert.equal(res.status, 400, res.text);
      assert.equal(res.body.code, 'validation_failed');
    }
    // a raw control character in a part header is a malformed body; an encoded one (RFC 5987) is decoded, then refused
    const rawControl = await postForm('/api/mails', alice.token, form({ to: 'a@remote.invalid' }, [{ name: 'evil\u0007.txt', bytes: textFile }]));
    assert.equal(rawControl.status, 400);
    assert.equal(rawControl.body.code, 'bad_request');
    const encoded = await postRaw('/api/mails', alice.token, [
      { name: 'to', value: 'a@remote.invalid' },
      { name: 'attachments', filenameHeader: "filename*=UTF-8''evil%0D%0ABcc%3A%20y%40remote.invalid.txt", value: 'x' },
    ]);
    assert.equal(encoded.status, 400, encoded.text);
    assert.equal(encoded.body.code, 'validation_failed');
    assert.equal(encoded.body.details![0]!.path, 'attachments.filename');
    assert.deepEqual(await counts(), before);
  });

  it('when a file is larger than MAX_MESSAGE_SIZE, then 413 JSON and nothing is stored', async () => {
    const before = await counts();
    const res = await postForm('/api/mails', alice.token, form({ to: 'a@remote.invalid' }, [{ name: 'big.bin', bytes: new Uint8Array(MAX_MESSAGE_SIZE + 1) }]));
    assert.equal(res.status, 413);
    assert.equal(res.body.code, 'payload_too_large');
    assert.match(res.body.error!, /larger than/);
    assert.deepEqual(await counts(), before);
  });

  it('when a request declares more bytes than a message may have, then 413 before it is read', async () => {
    const res = await postForm('/api/mails', alice.token, form({ to: 'a@remote.invalid' }, [{ name: 'a.bin', bytes: new Uint8Array(200_000) }, { name: 'b.bin', bytes: new Uint8Array(200_000) }]));
    assert.equal(res.status, 413);
    assert.equal(res.body.code, 'payload_too_large');
  });

  it('when the files fit one by one but the message does not, then 413 and nothing is stored', async () => {
    const before = await counts();
    const res = await postForm('/api/mails', alice.token, form({ to: 'a@remote.invalid' }, [{ name: 'a.bin', bytes: new Uint8Array(250_000) }]));
    assert.equal(res.status, 413, res.text);
    assert.equal(res.body.code, 'message_too_large');
    assert.deepEqual(await counts(), before);
  });

  it('when there are more files than MAX_ATTACHMENTS or a file in another field, then 400 JSON and nothing is stored', async () => {
    const before = await counts();
    const many = Array.from({ length: MAX_ATTACHMENTS + 1 }, (_, i) => ({ name: `f${i}.txt`, bytes: textFile }));
    const tooMany = await postForm('/api/mails', alice.token, form({ to: 'a@remote.invalid' }, many));
    assert.equal(tooMany.status, 400);
    assert.equal(tooMany.body.code, 'validation_failed');
    assert.match(tooMany.body.error!, /too many files/);
    const unexpected = await postForm('/api/mails', alice.token, form({ to: 'a@remote.invalid' }, [{ field: 'evil', name: 'x.txt', bytes: textFile }]));
    assert.equal(unexpected.status, 400);
    assert.match(unexpected.body.error!, /unexpected file field "evil"/);
    assert.deepEqual(await counts(), before);
  });
});

describe('send-email and webmail compose', () => {
  it('when send-email is called, then 202 with one queued row per recipient, sent from the caller', async () => {
    const res = await api<{ id: string; status: string; recipients: { address: string; status: string }[] }>('POST', '/api/messages/send-email', alice.token, {
      to: 'dave@remote.invalid',
      cc: ['erin@remote.invalid', 'DAVE@remote.invalid'],
      subject: 'Hi',
      text: 'plain body',
    });
    assert.equal(res.status, 202, res.text);
    assert.equal(res.body.status, 'queued');
    assert.deepEqual(res.body.recipients.map((r) => `${r.address}:${r.status}`).sort(), ['dave@remote.invalid:queued', 'erin@remote.invalid:queued']);
    const sub = await t.services.db.selectFrom('submissions').selectAll().where('id', '=', res.body.id).executeTakeFirstOrThrow();
    assert.equal(sub.source, 'api');
    assert.equal(sub.from_address, alice.address);
    assert.equal((await t.services.db.selectFrom('outbound').select('id').where('submission_id', '=', res.body.id).execute()).length, 2);
  });

  it('when webmail saves a draft and then sends a reply with its attachment, then 201, then 202 with In-Reply-To, References and the attachment', async () => {
    const original = await api<{ id: string }>('POST', '/api/messages/send-email', alice.token, { to: 'frank@remote.invalid', subject: 'Original', text: 'x' });
    const sentCopy = await t.services.db.selectFrom('submissions').select(['stored_message_id', 'message_id']).where('id', '=', original.body.id).executeTakeFirstOrThrow();

    const withFile = await postForm('/api/mails', alice.token, form({ subject: 'holder' }, [{ name: 'report.bin', bytes: binary }]));
    assert.equal(withFile.status, 201, withFile.text);
    const draft = await api('POST', '/api/webmail/messages', alice.token, { to: ['frank@remote.invalid'], subject: 'Re: Original', text: 'draft', draft: true });
    assert.equal(draft.status, 201, draft.text);
    assert.equal(draft.body.status, 'draft');
    assert.equal(draft.body.source, 'webmail');

    const res = await api<{ id: string; status: string }>('POST', '/api/webmail/messages', alice.token, {
      to: 'frank@remote.invalid',
      subject: 'Re: Original',
      text: 'answer',
      in_reply_to: sentCopy.stored_message_id,
      attachment_ids: [withFile.body.attachments[0]!.id],
    });
    assert.equal(res.status, 202, res.text);
    assert.equal(res.body.status, 'queued');
    const sent = await t.services.db.selectFrom('submissions').select(['stored_message_id', 'source']).where('id', '=', res.body.id).executeTakeFirstOrThrow();
    assert.equal(sent.source, 'webmail');
    const head = headerBlock(await rawOf(sent.stored_message_id!));
    assert.match(head, new RegExp(`^In-Reply-To: ${sentCopy.message_id!.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`, 'm'));
    assert.match(head, /^References: </m);
    const attachments = await t.services.db.selectFrom('attachments').select(['filename', 'size']).where('message_id', '=', sent.stored_message_id).execute();
    assert.deepEqual(attachments, [{ filename: 'report.bin', size: binary.length }]);
  });

  it("when webmail names another user's message or attachment, then 404 and nothing is queued", async () => {
    const amyDraft = await postForm('/api/mails', amy.token, form({ subject: 'mine' }, [{ name: 'm.txt', bytes: textFile }]));
    const before = await counts();
    const reply = await api('POST', '/api/webmail/messages', alice.token, { to: 'g@remote.invalid', subject: 's', in_reply_to: amyDraft.body.stored_message_id });
    assert.equal(reply.status, 404);
    const att = await api('POST', '/api/webmail/messages', alice.token, { to: 'g@remote.invalid', subject: 's', attachment_ids: [amyDraft.body.attachments[0]!.id] });
    assert.equal(att.status, 404);
    assert.deepEqual(await counts(), before);
  });
});

describe('sender rules, mailboxes and isolation', () => {
  it('when a member uses another From address, then 403 sender_not_allowed and nothing is stored', async () => {
    const before = await counts();
    const res = await postForm('/api/mails', alice.token, form({ from: amy.address, to: 'x@remote.invalid' }));
    assert.equal(res.status, 403, res.text);
    assert.equal(res.body.code, 'sender_not_allowed');
    assert.deepEqual(await counts(), before);
  });

  it('when the sender domain is not verified, then sending is 403 domain_not_verified and nothing is queued', async () => {
    const before = await counts();
    const res = await api('POST', '/api/messages/send-email', bob.token, { to: 'x@remote.invalid', subject: 's', text: 't' });
    assert.equal(res.status, 403, res.text);
    assert.equal(res.body.code, 'domain_not_verified');
    assert.deepEqual(await counts(), before);
  });

  it('when a user without a mailbox calls any route, then 403 with a clear message', async () => {
    for (const [method, path, body] of [
      ['GET', '/api/mails', undefined],
      ['POST', '/api/messages/send-email', { to: 'x@remote.invalid', subject: 's' }],
      ['POST', '/api/webmail/messages', { to: 'x@remote.invalid', draft: true }],
    ] as const) {
      const res = await api(method, path, a.token, body);
      assert.equal(res.status, 403, `${method} ${path}: ${res.text}`);
      assert.match(res.body.error!, /no mailbox/);
    }
  });

  it("when another user or tenant asks for a mail, then 404 for every verb", async () => {
    const mine = await postForm('/api/mails', alice.token, form({ to: 'x@remote.invalid', subject: 'private' }, [{ name: 'p.txt', bytes: textFile }]));
    assert.equal(mine.status, 201);
    for (const other of [amy, bob]) {
      assert.equal((await api('GET', `/api/mails/${mine.body.id}`, other.token)).status, 404);
      assert.equal((await api('GET', `/api/mails/${mine.body.id}/attachments/${mine.body.attachments[0]!.id}`, other.token)).status, 404);
      assert.equal((await api('POST', `/api/mails/${mine.body.id}/send`, other.token)).status, 404);
      assert.equal((await api('DELETE', `/api/mails/${mine.body.id}`, other.token)).status, 404);
      const list = await api<{ data: MailBody[] }>('GET', '/api/mails', other.token);
      assert.ok(!list.body.data.some((m) => m.id === mine.body.id));
    }
    assert.equal((await api('GET', '/api/mails/not-a-uuid', alice.token)).status, 404);
    assert.equal((await api('GET', `/api/mails/${mine.body.id}`, alice.token)).status, 200);
  });

  it('when the list is paged, then each mail appears once, newest first', async () => {
    const ids: string[] = [];
    let cursor: string | null = null;
    do {
      const res: ApiResponse<{ data: MailBody[]; next_cursor: string | null }> = await api('GET', `/api/mails?limit=2${cursor ? `&cursor=${cursor}` : ''}`, alice.token);
      assert.equal(res.status, 200);
      ids.push(...res.body.data.map((m) => m.id));
      cursor = res.body.next_cursor;
    } while (cursor);
    const rows = await t.services.db.selectFrom('submissions').select('id').where('user_id', '=', alice.userId).orderBy('created_at', 'desc').orderBy('id', 'desc').execute();
    assert.deepEqual(ids, rows.map((r) => r.id));
  });

  it('when the OpenAPI document is read, then the draft route takes multipart/form-data with attachments', async () => {
    const doc = await call<{ paths: Record<string, Record<string, { requestBody?: { content: Record<string, { schema: { properties: Record<string, unknown> } }> } }>> }>(t.apiPort, 'GET', '/api/openapi.json');
    const content = doc.body.paths['/api/mails']!.post!.requestBody!.content;
    assert.ok(content['multipart/form-data']!.schema.properties.attachments);
    assert.ok(doc.body.paths['/api/messages/send-email']!.post!.requestBody!.content['application/json']);
  });
});
