/**
 * The webmail REST API over real HTTP against the real server (embedded PostgreSQL, mail
 * delivered over real SMTP, no worker role so sent mail stays queued and nothing leaves
 * 127.0.0.1): folder counts as mail arrives and is read, folder creation and deletion rules,
 * paging through 120 messages (equal received_at included) without losing or repeating one,
 * every search operator and every bad one (400, nothing changed), reading a message with its HTML
 * sanitised, flags, moves, deletion to Trash and for good (quota and blob references released),
 * emptying Trash, attachment and raw downloads byte for byte, drafts (uploads replace them,
 * replace_draft), forwarding another message's attachments, changing the password, and isolation
 * between tenants (404).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import { startTestServer, type TestServer } from '../helpers/harness.js';
import { call, type ApiResponse } from '../helpers/http.js';
import { RawSmtp } from '../helpers/smtp-client.js';
import { PASSWORD, UNTHROTTLED_ENV, usersApi, type ApiTenant } from '../helpers/users-api.js';

interface Folder {
  id: string;
  name: string;
  special_use: string | null;
  total: number;
  unread: number;
}
interface Summary {
  id: string;
  folder_id: string;
  from: { name: string; address: string };
  to: { name: string; address: string }[];
  subject: string;
  snippet: string;
  date: string;
  seen: boolean;
  flagged: boolean;
  answered: boolean;
  draft: boolean;
  has_attachments: boolean;
  size: number;
}
interface View extends Omit<Summary, 'draft'> {
  html: string | null;
  text: string | null;
  remote_content: boolean;
  cc: { name: string; address: string }[];
  attachments: { id: string; filename: string; content_type: string; size: number; content_id: string | null }[];
  auth: unknown;
  draft: null | { to: { address: string }[]; bcc: { address: string }[]; subject: string; text: string | null };
}
interface Page {
  data: Summary[];
  next_cursor: string | null;
  code?: string;
  error?: string;
  details?: { path: string }[];
}
interface User {
  token: string;
  address: string;
  userId: string;
  mailboxId: string;
  refresh: string;
}

let t: TestServer;
let h: ReturnType<typeof usersApi>;
let a: ApiTenant;
let b: ApiTenant;
let alice: User;
let bob: User;

before(async () => {
  t = await startTestServer({ ...UNTHROTTLED_ENV, MAX_MESSAGE_SIZE: '300000', MAX_ATTACHMENTS: '5' });
  h = usersApi(t);
  a = await h.newTenant('wma');
  b = await h.newTenant('wmb');
  await t.services.db.updateTable('domains').set({ status: 'verified', verified_at: new Date() }).where('name', '=', a.domain).execute();
  alice = await user(a, 'Alice Example');
  bob = await user(b);
});

after(async () => {
  await t?.stop();
});

async function user(tenant: ApiTenant, name?: string): Promise<User> {
  const { user: u, token, refresh } = await h.userWithToken(tenant, 'member');
  if (name) await t.services.db.updateTable('users').set({ name }).where('id', '=', u.id).execute();
  return { token, address: u.email, userId: u.id, mailboxId: u.mailbox!.id, refresh };
}

function api<T = Record<string, unknown>>(method: string, path: string, who: { token: string }, body?: unknown): Promise<ApiResponse<T>> {
  return call<T>(t.apiPort, method, path, { token: who.token, body });
}

async function bytes(path: string, who: User): Promise<{ status: number; headers: Headers; body: Buffer }> {
  const res = await fetch(`http://127.0.0.1:${t.apiPort}${path}`, { headers: { authorization: `Bearer ${who.token}` } });
  return { status: res.status, headers: res.headers, body: Buffer.from(await res.arrayBuffer()) };
}

/** Delivers messages over one SMTP connection (one transaction each); returns them as sent. */
async function deliver(to: string, messages: string[]): Promise<void> {
  const c = await RawSmtp.connect(t.smtpPort);
  try {
    await c.hello();
    for (const m of messages) {
      assert.match((await c.command('MAIL FROM:<sender@remote.example>')).text, /^250 /);
      assert.match((await c.command(`RCPT TO:<${to}>`)).text, /^250 /);
      assert.match((await c.data(m)).text, /^250 /);
    }
  } finally {
    c.close();
  }
}

function mail(o: { subject: string; from?: string; to?: string; cc?: string; body?: string; html?: string; attachment?: { name: string; bytes: Buffer; cid?: string } }): string {
  const head = [`From: ${o.from ?? 'Sender <sender@remote.example>'}`, `To: ${o.to ?? 'someone@example.org'}`, ...(o.cc ? [`Cc: ${o.cc}`] : []), `Subject: ${o.subject}`, 'Date: Sat, 21 Nov 2026 06:00:00 +0000', 'MIME-Version: 1.0'];
  const text = o.body ?? 'Hello there.';
  if (!o.html && !o.attachment) return `${head.join('\r\n')}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n${text}\r\n`;
  const parts = [`Content-Type: text/plain; charset=utf-8\r\n\r\n${text}`];
  if (o.html) parts.push(`Content-Type: text/html; charset=utf-8\r\n\r\n${o.html}`);
  if (o.attachment) {
    parts.push(
      [
        'Content-Type: application/octet-stream',
        `Content-Disposition: attachment; filename="${o.attachment.name}"`,
        ...(o.attachment.cid ? [`Content-ID: <${o.attachment.cid}>`] : []),
        'Content-Transfer-Encoding: base64',
        '',
        o.attachment.bytes.toString('base64').replace(/.{76}/g, '$&\r\n'),
      ].join('\r\n'),
    );
  }
  return `${head.join('\r\n')}\r\nContent-Type: multipart/mixed; boundary="b0"\r\n\r\n${parts.map((p) => `--b0\r\n${p}\r\n`).join('')}--b0--\r\n`;
}

async function folders(who: User): Promise<{ mailbox: { used_bytes: number; quota_bytes: number }; data: Folder[] }> {
  const res = await api<{ mailbox: { used_bytes: number; quota_bytes: number }; data: Folder[] }>('GET', '/api/webmail/mailboxes', who);
  assert.equal(res.status, 200, res.text);
  return res.body;
}

async function folder(who: User, name: string): Promise<Folder> {
  const f = (await folders(who)).data.find((x) => x.name === name);
  assert.ok(f, `no folder ${name}`);
  return f;
}

async function list(who: User, query: string): Promise<ApiResponse<Page>> {
  return api<Page>('GET', `/api/webmail/messages?${query}`, who);
}

async function subjects(who: User, query: string): Promise<string[]> {
  const res = await list(who, query);
  assert.equal(res.status, 200, res.text);
  return res.body.data.map((m) => m.subject).sort();
}

async function findBySubject(who: User, subject: string): Promise<Summary> {
  const res = await list(who, `q=${encodeURIComponent(`in:anywhere subject:"${subject}"`)}`);
  const found = res.body.data.find((m) => m.subject === subject);
  assert.ok(found, `no message "${subject}": ${res.text}`);
  return found;
}

describe('folders', () => {
  it('when mail arrives and is read, then the folder counts follow, in the standard order', async () => {
    const user1 = await user(a);
    const start = await folders(user1);
    assert.deepEqual(
      start.data.map((f) => [f.name, f.special_use, f.total, f.unread]),
      [
        ['INBOX', 'inbox', 0, 0],
        ['Drafts', 'drafts', 0, 0],
        ['Sent', 'sent', 0, 0],
        ['Junk', 'junk', 0, 0],
        ['Trash', 'trash', 0, 0],
      ],
    );
    await deliver(user1.address, [mail({ subject: 'count one' }), mail({ subject: 'count two' })]);
    const inbox = await folder(user1, 'INBOX');
    assert.deepEqual([inbox.total, inbox.unread], [2, 2]);
    const msgs = await list(user1, 'mailbox=INBOX');
    const read = await api<Summary>('PUT', `/api/webmail/messages/${msgs.body.data[0]!.id}`, user1, { seen: true });
    assert.equal(read.status, 200, read.text);
    assert.equal(read.body.seen, true);
    const after1 = await folders(user1);
    assert.deepEqual([after1.data[0]!.total, after1.data[0]!.unread], [2, 1]);
    assert.ok(after1.mailbox.used_bytes > start.mailbox.used_bytes);
    // user folders come after the standard ones, by name
    for (const name of ['zeta', 'Alpha']) assert.equal((await api('POST', '/api/webmail/mailboxes', user1, { name })).status, 201);
    assert.deepEqual((await folders(user1)).data.map((f) => f.name), ['INBOX', 'Drafts', 'Sent', 'Junk', 'Trash', 'Alpha', 'zeta']);
  });

  it('when a user without a mailbox asks, then 403', async () => {
    const res = await api('GET', '/api/webmail/mailboxes', { token: a.token });
    assert.equal(res.status, 403, res.text);
    assert.equal((await api('GET', '/api/webmail/messages', { token: a.token })).status, 403);
  });

  it('when a folder name is bad or taken, then 400 or 409 and nothing is created', async () => {
    const created = await api<Folder>('POST', '/api/webmail/mailboxes', alice, { name: '  Projects ' });
    assert.equal(created.status, 201, created.text);
    assert.deepEqual([created.body.name, created.body.special_use, created.body.total, created.body.unread], ['Projects', null, 0, 0]);
    const before1 = (await folders(alice)).data.length;
    for (const name of ['', '   ', 'x'.repeat(101), 'a/b', 'tab\there', 'nul\u0000']) {
      const res = await api<{ code: string }>('POST', '/api/webmail/mailboxes', alice, { name });
      assert.equal(res.status, 400, `${JSON.stringify(name)}: ${res.text}`);
      assert.equal(res.body.code, 'validation_failed');
    }
    for (const name of ['projects', 'PROJECTS', 'inbox', 'Trash', 'drafts', 'SENT', 'junk']) {
      const res = await api('POST', '/api/webmail/mailboxes', alice, { name });
      assert.equal(res.status, 409, `${name}: ${res.text}`);
    }
    assert.equal((await api('POST', '/api/webmail/mailboxes', alice, { name: 'x', extra: 1 })).status, 400);
    assert.equal((await folders(alice)).data.length, before1);
  });

  it('when a folder is standard, not empty, unknown or another tenant\'s, then it is not deleted', async () => {
    const f = await api<Folder>('POST', '/api/webmail/mailboxes', alice, { name: 'Doomed' });
    const inbox = await folder(alice, 'INBOX');
    assert.equal((await api('DELETE', `/api/webmail/mailboxes/${inbox.id}`, alice)).status, 409);
    assert.equal((await api('DELETE', `/api/webmail/mailboxes/${f.body.id}`, bob)).status, 404);
    assert.equal((await api('DELETE', '/api/webmail/mailboxes/not-a-uuid', alice)).status, 404);
    await deliver(alice.address, [mail({ subject: 'to be moved into Doomed' })]);
    const m = await findBySubject(alice, 'to be moved into Doomed');
    assert.equal((await api('PUT', `/api/webmail/messages/${m.id}`, alice, { mailbox: f.body.id })).status, 200);
    const full = await api<{ error: string }>('DELETE', `/api/webmail/mailboxes/${f.body.id}`, alice);
    assert.equal(full.status, 409);
    assert.match(full.body.error, /move or delete its 1 messages first/);
    assert.equal((await api('PUT', `/api/webmail/messages/${m.id}`, alice, { mailbox: 'inbox' })).status, 200);
    assert.equal((await api('DELETE', `/api/webmail/mailboxes/${f.body.id}`, alice)).status, 204);
    assert.ok(!(await folders(alice)).data.some((x) => x.name === 'Doomed'));
  });
});

describe('listing', () => {
  it('when 120 messages are paged through (30 with the same received_at), then none is lost or repeated', async () => {
    const reader = await user(a);
    await deliver(reader.address, [mail({ subject: 'bulk' })]);
    // 119 more copies of the row, made in SQL (delivering 120 messages costs seconds), each with its blob reference
    await sql`
      INSERT INTO messages (tenant_id, mailbox_id, folder_id, subject, size, raw_blob_key, raw_sha256, raw_size, search, received_at)
      SELECT m.tenant_id, m.mailbox_id, m.folder_id, m.subject || ' ' || g, m.size, m.raw_blob_key, m.raw_sha256, m.raw_size, m.search,
        m.received_at - make_interval(secs => g)
      FROM messages m CROSS JOIN generate_series(1, 119) g WHERE m.mailbox_id = ${reader.mailboxId}
    `.execute(t.services.db);
    await sql`UPDATE blobs SET refcount = refcount + 119 WHERE key = (SELECT raw_blob_key FROM messages WHERE mailbox_id = ${reader.mailboxId} LIMIT 1)`.execute(t.services.db);
    const rows = await t.services.db.selectFrom('messages').select('id').where('mailbox_id', '=', reader.mailboxId).orderBy('id').execute();
    assert.equal(rows.length, 120);
    const same = new Date('2026-01-01T00:00:00.000Z');
    await t.services.db.updateTable('messages').set({ received_at: same }).where('id', 'in', rows.slice(0, 30).map((r) => r.id)).execute();
    const seen: Summary[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const res: ApiResponse<Page> = await list(reader, `limit=50${cursor ? `&cursor=${cursor}` : ''}`);
      assert.equal(res.status, 200, res.text);
      seen.push(...res.body.data);
      cursor = res.body.next_cursor;
      pages++;
    } while (cursor);
    assert.equal(pages, 3);
    assert.equal(seen.length, 120);
    assert.equal(new Set(seen.map((m) => m.id)).size, 120);
    const sorted = [...seen].sort((x, y) => (x.date === y.date ? (x.id < y.id ? 1 : -1) : x.date < y.date ? 1 : -1));
    assert.deepEqual(seen.map((m) => m.id), sorted.map((m) => m.id));
  });

  it('when the list parameters are bad, then 400 or 404', async () => {
    assert.equal((await list(alice, 'cursor=bogus')).status, 400);
    assert.equal((await list(alice, 'limit=201')).status, 400);
    assert.equal((await list(alice, 'limit=0')).status, 400);
    assert.equal((await list(alice, 'mailbox=Nowhere')).status, 404);
    assert.equal((await list(alice, `mailbox=${(await folder(bob, 'INBOX')).id}`)).status, 404);
    assert.equal((await list(alice, 'foo=1')).status, 400);
  });
});

describe('search', () => {
  let user1: User;
  const attachment = randomBytes(2000);

  before(async () => {
    user1 = await user(a);
    await deliver(user1.address, [
      mail({ subject: 'Quarterly report', from: 'Carol Finance <carol@finance.example>', body: 'the budget is attached', attachment: { name: 'q.bin', bytes: attachment } }),
      mail({ subject: 'Lunch plans', from: 'Dave <dave@food.example>', to: 'Team <team@example.org>', cc: 'Erin Boss <erin@boss.example>', body: 'pizza or sushi' }),
      mail({ subject: '100% discount', from: 'Shop <shop@spam.example>', body: 'buy now' }),
      mail({ subject: '1000 discount', from: 'Shop <shop@spam.example>', body: 'buy later' }),
      mail({ subject: 'Old news', from: 'Archive <old@archive.example>', body: 'from long ago' }),
      mail({ subject: 'Trashed budget', from: 'Carol Finance <carol@finance.example>', body: 'budget draft' }),
    ]);
    const set = async (subject: string, body: Record<string, unknown>): Promise<void> => {
      const m = await findBySubject(user1, subject);
      assert.equal((await api('PUT', `/api/webmail/messages/${m.id}`, user1, body)).status, 200);
    };
    await set('Lunch plans', { seen: true, flagged: true });
    await set('Trashed budget', { mailbox: 'Trash' });
    await api('POST', '/api/webmail/mailboxes', user1, { name: 'My Projects' });
    await set('1000 discount', { mailbox: (await folder(user1, 'My Projects')).id });
    const old = await findBySubject(user1, 'Old news');
    await t.services.db.updateTable('messages').set({ received_at: new Date('2024-02-29T12:00:00Z'), answered: true }).where('id', '=', old.id).execute();
  });

  const q = (s: string): string => `q=${encodeURIComponent(s)}`;

  it('when each operator is used, then exactly the matching messages come back', async () => {
    const cases: [string, string[]][] = [
      ['from:carol', ['Quarterly report']],
      ['from:"Carol Finance"', ['Quarterly report']],
      ['from:FINANCE.example', ['Quarterly report']],
      ['to:team', ['Lunch plans']],
      ['to:erin', ['Lunch plans']],
      ['cc:boss', ['Lunch plans']],
      ['cc:team', []],
      ['subject:report', ['Quarterly report']],
      ['subject:"100%"', ['100% discount']],
      ['subject:10_0', []],
      ['has:attachment', ['Quarterly report']],
      ['is:unread', ['100% discount', '1000 discount', 'Old news', 'Quarterly report']],
      ['is:read', ['Lunch plans']],
      ['is:flagged', ['Lunch plans']],
      ['is:starred', ['Lunch plans']],
      ['is:answered', ['Old news']],
      ['before:2024-03-01', ['Old news']],
      ['after:2024-03-01', ['100% discount', '1000 discount', 'Lunch plans', 'Quarterly report']],
      ['after:2024-02-29 before:2024/03/01', ['Old news']],
      ['budget', ['Quarterly report']],
      ['budget in:anywhere', ['Quarterly report', 'Trashed budget']],
      ['budget in:trash', ['Trashed budget']],
      ['in:"my projects"', ['1000 discount']],
      ['"buy now"', ['100% discount']],
      ['pizza from:dave is:flagged', ['Lunch plans']],
      ['pizza from:carol', []],
      ['in:inbox in:trash', []],
    ];
    for (const [search, expected] of cases) {
      assert.deepEqual(await subjects(user1, q(search)), expected.sort(), search);
    }
    // with a mailbox, the search stays inside it
    assert.deepEqual(await subjects(user1, `mailbox=Trash&${q('budget')}`), ['Trashed budget']);
    assert.deepEqual(await subjects(user1, `mailbox=INBOX&${q('discount')}`), ['100% discount']);
  });

  it('when a search term has a bad value, then 400 naming it, and nothing changes', async () => {
    const before1 = await folders(user1);
    for (const search of ['before:yesterday', 'after:2024-13-01', 'has:pony', 'is:whatever', 'in:nowhere', 'from:', 'x'.repeat(501)]) {
      const res = await list(user1, q(search));
      assert.equal(res.status, 400, `${search}: ${res.text}`);
      assert.equal(res.body.code, 'validation_failed');
      assert.deepEqual(res.body.details?.map((d) => d.path), ['q'], search);
      if (search.length < 50) assert.ok(res.body.error?.includes(search.split(' ')[0]!), res.body.error);
    }
    assert.deepEqual(await folders(user1), before1);
  });
});

describe('reading, changing and deleting', () => {
  const png = randomBytes(5000);
  let sent: string;
  let view: View;

  before(async () => {
    sent = mail({
      subject: 'Rich mail',
      cc: 'Fred <fred@example.org>',
      html: '<p>Hi <b>there</b></p><script>alert(1)</script><img src="https://track.example/p.gif" onerror="x()"><img src="cid:logo@x">',
      attachment: { name: 'photo.bin', bytes: png, cid: 'logo@x' },
    });
    await deliver(alice.address, [sent]);
    const found = await findBySubject(alice, 'Rich mail');
    const res = await api<View>('GET', `/api/webmail/messages/${found.id}`, alice);
    assert.equal(res.status, 200, res.text);
    view = res.body;
  });

  it('when a message is opened, then its HTML is sanitised, its parts listed, and it stays unread', async () => {
    assert.doesNotMatch(view.html!, /<script|onerror|alert/);
    assert.match(view.html!, /<b>there<\/b>/);
    assert.match(view.html!, /src="cid:logo@x"/);
    assert.equal(view.remote_content, true);
    assert.match(view.text!, /Hello there/);
    assert.deepEqual(view.cc, [{ name: 'Fred', address: 'fred@example.org' }]);
    assert.deepEqual(
      view.attachments.map((x) => [x.filename, x.size, x.content_id]),
      [['photo.bin', png.length, 'logo@x']],
    );
    assert.equal(view.draft, null);
    assert.equal(view.seen, false);
    assert.equal((await findBySubject(alice, 'Rich mail')).seen, false);
  });

  it('when an attachment or the raw message is downloaded, then the bytes are those sent', async () => {
    const att = await bytes(`/api/webmail/messages/${view.id}/attachments/${view.attachments[0]!.id}`, alice);
    assert.equal(att.status, 200);
    assert.ok(att.body.equals(png));
    assert.equal(att.headers.get('content-type'), 'application/octet-stream');
    assert.equal(att.headers.get('x-content-type-options'), 'nosniff');
    assert.match(att.headers.get('content-disposition') ?? '', /^attachment; filename="?photo\.bin"?$/);
    const raw = await bytes(`/api/webmail/messages/${view.id}/raw`, alice);
    assert.equal(raw.status, 200);
    assert.equal(raw.headers.get('content-type'), 'message/rfc822');
    assert.equal(raw.headers.get('content-disposition'), `attachment; filename="${view.id}.eml"`);
    assert.match(raw.body.toString('latin1'), /^Received: /);
    assert.ok(raw.body.toString('latin1').endsWith(sent), 'the raw message ends with the bytes sent');
    assert.equal((await bytes(`/api/webmail/messages/${view.id}/attachments/${randomUuid()}`, alice)).status, 404);
  });

  it("when another tenant's user names the message, its folder or attachment, then 404 and nothing changes", async () => {
    const paths: [string, string, unknown?][] = [
      ['GET', `/api/webmail/messages/${view.id}`],
      ['PUT', `/api/webmail/messages/${view.id}`, { seen: true }],
      ['DELETE', `/api/webmail/messages/${view.id}`],
      ['GET', `/api/webmail/messages/${view.id}/raw`],
      ['GET', `/api/webmail/messages/${view.id}/attachments/${view.attachments[0]!.id}`],
      ['DELETE', `/api/webmail/mailboxes/${view.folder_id}`],
      ['DELETE', `/api/webmail/mailboxes/${view.folder_id}/messages`],
      ['GET', `/api/webmail/messages?mailbox=${view.folder_id}`],
      ['GET', '/api/webmail/messages/not-a-uuid'],
    ];
    for (const [method, path, body] of paths) {
      const res = await api(method, path, bob, body);
      assert.equal(res.status, 404, `${method} ${path}: ${res.text}`);
    }
    // a folder of bob's is no target for alice's message either
    const res = await api('PUT', `/api/webmail/messages/${view.id}`, alice, { mailbox: (await folder(bob, 'INBOX')).id });
    assert.equal(res.status, 404);
    const still = await findBySubject(alice, 'Rich mail');
    assert.deepEqual([still.seen, still.folder_id], [false, view.folder_id]);
  });

  it('when a change is empty or names an unknown folder, then 400 or 404', async () => {
    assert.equal((await api('PUT', `/api/webmail/messages/${view.id}`, alice, {})).status, 400);
    assert.equal((await api('PUT', `/api/webmail/messages/${view.id}`, alice, { seen: 'yes' })).status, 400);
    assert.equal((await api('PUT', `/api/webmail/messages/${view.id}`, alice, { mailbox: 'Nowhere' })).status, 404);
  });

  it('when a message is flagged, moved, deleted, then deleted from Trash, then quota and blob references are released', async () => {
    await deliver(alice.address, [mail({ subject: 'Short-lived', attachment: { name: 'a.bin', bytes: randomBytes(20_000) } })]);
    const m = await findBySubject(alice, 'Short-lived');
    const flagged = await api<Summary>('PUT', `/api/webmail/messages/${m.id}`, alice, { flagged: true, seen: true });
    assert.deepEqual([flagged.body.flagged, flagged.body.seen], [true, true]);
    const projects = await folder(alice, 'Projects');
    const moved = await api<Summary>('PUT', `/api/webmail/messages/${m.id}`, alice, { mailbox: projects.id });
    assert.equal(moved.body.folder_id, projects.id);
    const usage = (await folders(alice)).mailbox.used_bytes;
    const keys = await blobKeysOf(m.id);
    const refs = await refcounts(keys);

    const trashed = await api<Summary>('DELETE', `/api/webmail/messages/${m.id}`, alice);
    assert.equal(trashed.status, 200, trashed.text);
    assert.equal(trashed.body.folder_id, (await folder(alice, 'Trash')).id);
    assert.equal((await folders(alice)).mailbox.used_bytes, usage);

    const gone = await api('DELETE', `/api/webmail/messages/${m.id}`, alice);
    assert.equal(gone.status, 204);
    assert.equal((await api('GET', `/api/webmail/messages/${m.id}`, alice)).status, 404);
    assert.equal((await folders(alice)).mailbox.used_bytes, usage - m.size);
    assert.deepEqual(await refcounts(keys), refs.map((r) => r - 1));
  });

  it('when Trash is emptied, then every message in it goes for good; other folders cannot be emptied', async () => {
    await deliver(alice.address, [mail({ subject: 'Empty me 1', attachment: { name: 'e.bin', bytes: randomBytes(3000) } }), mail({ subject: 'Empty me 2' })]);
    for (const s of ['Empty me 1', 'Empty me 2']) await api('DELETE', `/api/webmail/messages/${(await findBySubject(alice, s)).id}`, alice);
    const trash = await folder(alice, 'Trash');
    const usage = (await folders(alice)).mailbox.used_bytes;
    const inTrash = await t.services.db.selectFrom('messages').select(['id', 'size']).where('folder_id', '=', trash.id).execute();
    const keys = (await Promise.all(inTrash.map((r) => blobKeysOf(r.id)))).flat();
    const refs = await refcounts(keys);
    assert.equal((await api('DELETE', `/api/webmail/mailboxes/${(await folder(alice, 'INBOX')).id}/messages`, alice)).status, 409);
    const res = await api<{ deleted: number }>('DELETE', `/api/webmail/mailboxes/${trash.id}/messages`, alice);
    assert.equal(res.status, 200, res.text);
    assert.equal(res.body.deleted, inTrash.length);
    assert.equal((await folder(alice, 'Trash')).total, 0);
    assert.equal((await folders(alice)).mailbox.used_bytes, usage - inTrash.reduce((s, r) => s + Number(r.size), 0));
    const expected = new Map<string, number>();
    keys.forEach((k, i) => expected.set(k, (expected.get(k) ?? refs[i]!) - 1));
    assert.deepEqual(await refcounts([...expected.keys()]), [...expected.values()].map((v) => Math.max(v, 0)));
  });
});

describe('drafts and forwarding', () => {
  it('when files are uploaded to a draft, then it is replaced by one with them (new id, old id 404)', async () => {
    const draft = await api<{ stored_message_id: string; attachments: unknown[] }>('POST', '/api/webmail/messages', alice, {
      to: 'Frank <frank@remote.invalid>',
      bcc: 'hidden@remote.invalid',
      subject: 'Draft one',
      text: 'first words',
      draft: true,
    });
    assert.equal(draft.status, 201, draft.text);
    const copy = draft.body.stored_message_id;
    const opened = await api<View>('GET', `/api/webmail/messages/${copy}`, alice);
    assert.equal(opened.body.draft?.subject, 'Draft one');
    assert.deepEqual(opened.body.draft?.bcc.map((x) => x.address), ['hidden@remote.invalid']);

    const file = randomBytes(4000);
    const form = new FormData();
    form.append('attachments', new Blob([file]), 'notes.bin');
    const up = await fetch(`http://127.0.0.1:${t.apiPort}/api/webmail/messages/${copy}/attachments`, { method: 'POST', headers: { authorization: `Bearer ${alice.token}` }, body: form });
    const upBody = (await up.json()) as View;
    assert.equal(up.status, 201, JSON.stringify(upBody));
    assert.notEqual(upBody.id, copy);
    assert.deepEqual(upBody.attachments.map((x) => [x.filename, x.size]), [['notes.bin', file.length]]);
    assert.equal(upBody.draft?.text, 'first words');
    assert.deepEqual(upBody.draft?.to.map((x) => x.address), ['frank@remote.invalid']);
    assert.equal((await api('GET', `/api/webmail/messages/${copy}`, alice)).status, 404);
    const drafts = await t.services.db.selectFrom('submissions').select('id').where('user_id', '=', alice.userId).where('status', '=', 'draft').where('subject', '=', 'Draft one').execute();
    assert.equal(drafts.length, 1, 'one draft row, the new one');

    // a second upload keeps the first file
    const form2 = new FormData();
    form2.append('attachments', new Blob([Buffer.from('second')]), 'two.txt');
    const up2 = await fetch(`http://127.0.0.1:${t.apiPort}/api/webmail/messages/${upBody.id}/attachments`, { method: 'POST', headers: { authorization: `Bearer ${alice.token}` }, body: form2 });
    const up2Body = (await up2.json()) as View;
    assert.equal(up2.status, 201);
    assert.deepEqual(up2Body.attachments.map((x) => x.filename), ['notes.bin', 'two.txt']);
    const dl = await bytes(`/api/webmail/messages/${up2Body.id}/attachments/${up2Body.attachments[0]!.id}`, alice);
    assert.ok(dl.body.equals(file));

    // not a draft: 409; someone else's: 404
    const inboxMsg = await findBySubject(alice, 'Rich mail');
    const form3 = new FormData();
    form3.append('attachments', new Blob([Buffer.from('x')]), 'x.txt');
    const notDraft = await fetch(`http://127.0.0.1:${t.apiPort}/api/webmail/messages/${inboxMsg.id}/attachments`, { method: 'POST', headers: { authorization: `Bearer ${alice.token}` }, body: form3 });
    assert.equal(notDraft.status, 409);
    const form4 = new FormData();
    form4.append('attachments', new Blob([Buffer.from('x')]), 'x.txt');
    const other = await fetch(`http://127.0.0.1:${t.apiPort}/api/webmail/messages/${up2Body.id}/attachments`, { method: 'POST', headers: { authorization: `Bearer ${bob.token}` }, body: form4 });
    assert.equal(other.status, 404);
  });

  it('when a draft is saved or sent with replace_draft, then the old draft (copy and row) is gone', async () => {
    const first = await api<{ stored_message_id: string }>('POST', '/api/webmail/messages', alice, { to: 'g@remote.invalid', subject: 'Evolving', text: 'v1', draft: true });
    const second = await api<{ stored_message_id: string; id: string }>('POST', '/api/webmail/messages', alice, {
      to: 'g@remote.invalid',
      subject: 'Evolving',
      text: 'v2',
      draft: true,
      replace_draft: first.body.stored_message_id,
    });
    assert.equal(second.status, 201, second.text);
    assert.equal((await api('GET', `/api/webmail/messages/${first.body.stored_message_id}`, alice)).status, 404);
    assert.equal((await api<View>('GET', `/api/webmail/messages/${second.body.stored_message_id}`, alice)).body.draft?.text, 'v2');
    // replacing it again with the same old id: it is gone
    const stale = await api('POST', '/api/webmail/messages', alice, { to: 'g@remote.invalid', subject: 'x', draft: true, replace_draft: first.body.stored_message_id });
    assert.equal(stale.status, 404);
    // a message that is not a draft cannot be replaced
    const notDraft = await api('POST', '/api/webmail/messages', alice, { to: 'g@remote.invalid', draft: true, replace_draft: (await findBySubject(alice, 'Rich mail')).id });
    assert.equal(notDraft.status, 409);

    const sent = await api<{ id: string; status: string; recipients: unknown[] }>('POST', '/api/webmail/messages', alice, {
      to: 'g@remote.invalid',
      subject: 'Evolving',
      text: 'final',
      replace_draft: second.body.stored_message_id,
    });
    assert.equal(sent.status, 202, sent.text);
    assert.equal(sent.body.status, 'queued');
    assert.equal((await api('GET', `/api/webmail/messages/${second.body.stored_message_id}`, alice)).status, 404);
    assert.equal((await api('GET', `/api/mails/${second.body.id}`, alice)).status, 404);
    const mailView = await api<{ recipients: { address: string; status: string }[] }>('GET', `/api/mails/${sent.body.id}`, alice);
    assert.deepEqual(mailView.body.recipients.map((r) => [r.address, r.status]), [['g@remote.invalid', 'queued']]);
  });

  it("when forwarding with a received message's attachment_ids, then the sent copy carries the same bytes", async () => {
    const original = await api<View>('GET', `/api/webmail/messages/${(await findBySubject(alice, 'Rich mail')).id}`, alice);
    const res = await api<{ id: string }>('POST', '/api/webmail/messages', alice, {
      to: 'h@remote.invalid',
      subject: 'Fwd: Rich mail',
      text: 'see below',
      attachment_ids: [original.body.attachments[0]!.id],
    });
    assert.equal(res.status, 202, res.text);
    const sub = await t.services.db.selectFrom('submissions').select('stored_message_id').where('id', '=', res.body.id).executeTakeFirstOrThrow();
    const fwd = await api<View>('GET', `/api/webmail/messages/${sub.stored_message_id}`, alice);
    assert.deepEqual(fwd.body.attachments.map((x) => [x.filename, x.size]), [['photo.bin', original.body.attachments[0]!.size]]);
    const a1 = await bytes(`/api/webmail/messages/${original.body.id}/attachments/${original.body.attachments[0]!.id}`, alice);
    const a2 = await bytes(`/api/webmail/messages/${fwd.body.id}/attachments/${fwd.body.attachments[0]!.id}`, alice);
    assert.ok(a1.body.equals(a2.body));
    // another tenant's attachment: 404
    const theirs = await api('POST', '/api/webmail/messages', bob, { to: 'h@remote.invalid', subject: 'x', attachment_ids: [original.body.attachments[0]!.id] });
    assert.equal(theirs.status, 404);
  });
});

describe('password', () => {
  it('when the current password is wrong, then 400 on current_password and nothing changes', async () => {
    const u = await user(a);
    const res = await api<{ code: string; details: { path: string }[] }>('POST', '/api/auth/password', u, { current_password: 'wrong password', password: 'a new password 1' });
    assert.equal(res.status, 400, res.text);
    assert.equal(res.body.code, 'validation_failed');
    assert.deepEqual(res.body.details.map((d) => d.path), ['current_password']);
    assert.equal((await h.login(u.address)).status, 200);
    const weak = await api('POST', '/api/auth/password', u, { current_password: PASSWORD, password: 'short' });
    assert.equal(weak.status, 400);
    assert.equal((await h.login(u.address)).status, 200);
  });

  it('when the password is changed, then other sessions end and the new pair works', async () => {
    const u = await user(a);
    const other = await h.login(u.address);
    const res = await api<{ access_token: string; refresh_token: string; expires_in: number }>('POST', '/api/auth/password', u, { current_password: PASSWORD, password: 'a brand new password' });
    assert.equal(res.status, 200, res.text);
    assert.ok(res.body.expires_in > 0);
    assert.equal((await h.refresh(u.refresh)).status, 401);
    assert.equal((await h.refresh(other.body.refresh_token)).status, 401);
    assert.equal((await h.refresh(res.body.refresh_token)).status, 200);
    assert.equal((await api('GET', '/api/webmail/mailboxes', { token: res.body.access_token })).status, 200);
    assert.equal((await h.login(u.address)).status, 401);
    assert.equal((await h.login(u.address, 'a brand new password')).status, 200);
    const audit = await t.services.db.selectFrom('audit_logs').select('action').where('actor_user_id', '=', u.userId).where('action', '=', 'auth.password_changed').execute();
    assert.equal(audit.length, 1);
  });
});

function randomUuid(): string {
  return '00000000-0000-4000-8000-000000000000';
}

async function blobKeysOf(messageId: string): Promise<string[]> {
  const m = await t.services.db.selectFrom('messages').select('raw_blob_key').where('id', '=', messageId).executeTakeFirstOrThrow();
  const atts = await t.services.db.selectFrom('attachments').select('blob_key').where('message_id', '=', messageId).execute();
  return [m.raw_blob_key, ...atts.map((x) => x.blob_key)];
}

async function refcounts(keys: string[]): Promise<number[]> {
  const rows = await t.services.db.selectFrom('blobs').select(['key', 'refcount']).where('key', 'in', keys).execute();
  return keys.map((k) => rows.find((r) => r.key === k)?.refcount ?? 0);
}
