/**
 * /api/users lifecycle over real HTTP and SMTP against the app on an embedded PostgreSQL:
 * password changes (by an admin, self-service with current_password; refresh tokens revoked),
 * suspension (no login, no refresh, mail still accepted over SMTP), last-owner protections,
 * quota usage growing with delivered mail, and deletion with its mailbox, messages and blob
 * references (the collector then removes the user's own blobs; a shared blob stays readable).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { readAll } from '../../src/blobs/blob-store.js';
import { startTestServer, type TestServer } from '../helpers/harness.js';
import type { ApiResponse } from '../helpers/http.js';
import { sendWithNodemailer } from '../helpers/smtp-client.js';
import { PASSWORD, UNTHROTTLED_ENV, usersApi, type ApiTenant, type UserBody } from '../helpers/users-api.js';

let t: TestServer;
let h: ReturnType<typeof usersApi>;
let a: ApiTenant;

before(async () => {
  // grace 0: the collector removes unreferenced blobs at once; no inline blobs: every blob is a file
  t = await startTestServer({ ...UNTHROTTLED_ENV, BLOB_GC_GRACE_MS: '0', BLOB_INLINE_MAX_BYTES: '0' });
  h = usersApi(t);
  a = await h.newTenant('a');
});

after(async () => {
  await t?.stop();
});

const api = <T = UserBody>(method: string, path: string, token?: string, body?: unknown): Promise<ApiResponse<T>> => h.api<T>(method, path, token, body);
const createUser = (tenant: ApiTenant, body?: Record<string, unknown>): Promise<UserBody> => h.createUser(tenant, body);

/** Sends a message over SMTP (nodemailer), optionally with an attachment; returns the final reply. */
function sendMail(to: string | string[], subject: string, attachment?: Buffer): Promise<string> {
  return sendWithNodemailer(t.smtpPort, {
    from: 'sender@example.org',
    to,
    subject,
    text: `body of ${subject}`,
    attachments: attachment ? [{ filename: 'data.bin', content: attachment, contentType: 'application/octet-stream' }] : [],
  });
}

describe('quota usage', () => {
  it('when a message arrives over SMTP, then used_bytes grows by its stored size', async () => {
    const user = await createUser(a);
    assert.equal(user.mailbox?.used_bytes, 0);
    assert.match(await sendMail(user.email, 'quota check', randomBytes(4000)), /^250 /);
    const res = await api('GET', `/api/users/${user.id}`, a.token);
    const stored = await t.services.db.selectFrom('messages').select('size').where('mailbox_id', '=', user.mailbox.id).execute();
    assert.equal(stored.length, 1);
    assert.ok(res.body.mailbox!.used_bytes > 4000, String(res.body.mailbox!.used_bytes));
    assert.equal(res.body.mailbox!.used_bytes, stored[0]!.size);
    // the same figure once the worker has folded the ledger into the mailbox row
    assert.ok((await t.services.quota.fold()) >= 1);
    const list = await api<{ data: UserBody[] }>('GET', '/api/users?limit=200', a.token);
    assert.equal(list.body.data.find((u) => u.id === user.id)?.mailbox?.used_bytes, stored[0]!.size);
  });
});

describe('passwords', () => {
  it("when an owner sets a user's password, then 204, the old password gets 401, the new one 200, and old refresh tokens stop working", async () => {
    const member = await h.userWithToken(a, 'member');
    const res = await api('PUT', `/api/users/${member.user.id}/password`, a.token, { password: 'brand new secret' });
    assert.equal(res.status, 204, res.text);
    assert.equal((await h.login(member.user.email)).status, 401);
    assert.equal((await h.login(member.user.email, 'brand new secret')).status, 200);
    assert.equal((await h.refresh(member.refresh)).status, 401);
  });

  it('when a member changes its own password with current_password, then 204; without it 400; with a wrong one 403', async () => {
    const member = await h.userWithToken(a, 'member');
    const path = `/api/users/${member.user.id}/password`;
    const missing = await api('PUT', path, member.token, { password: 'my new password' });
    assert.equal(missing.status, 400);
    assert.match(missing.body.error ?? '', /current_password is required/);
    const wrong = await api('PUT', path, member.token, { password: 'my new password', current_password: 'not it at all' });
    assert.equal(wrong.status, 403);
    assert.equal((await h.login(member.user.email)).status, 200, 'unchanged after the refusals');
    const ok = await api('PUT', path, member.token, { password: 'my new password', current_password: PASSWORD });
    assert.equal(ok.status, 204, ok.text);
    assert.equal((await h.login(member.user.email)).status, 401);
    assert.equal((await h.login(member.user.email, 'my new password')).status, 200);
  });

  const bad: [string, Record<string, unknown>, RegExp][] = [
    ['no password', {}, /password/],
    ['a password under 8 characters', { password: 'short' }, /at least 8 characters/],
    ['a password over 72 bytes', { password: 'x'.repeat(73) }, /at most 72 bytes/],
    ['an unknown field', { password: 'long enough 1', force: true }, /force|unrecognized/i],
  ];
  for (const [name, body, message] of bad) {
    it(`when the new password has ${name}, then 400 and the old one still works`, async () => {
      const user = await createUser(a);
      const res = await api('PUT', `/api/users/${user.id}/password`, a.token, body);
      assert.equal(res.status, 400, res.text);
      assert.match(res.body.error ?? '', message);
      assert.equal((await h.login(user.email)).status, 200);
    });
  }
});

describe('suspension', () => {
  it('when a user is suspended, then login is 403, refresh is 401, mail is still accepted over SMTP; reactivated, login works again', async () => {
    const member = await h.userWithToken(a, 'member');
    const res = await api('PUT', `/api/users/${member.user.id}/status`, a.token, { status: 'suspended' });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.body.status, 'suspended');
    const denied = await h.login(member.user.email);
    assert.equal(denied.status, 403);
    assert.equal(denied.body.code, 'account_suspended');
    assert.equal((await h.refresh(member.refresh)).status, 401);
    assert.match(await sendWithNodemailer(t.smtpPort, { from: 'sender@example.org', to: member.user.email, subject: 'while suspended' }), /^250 /);
    const stored = await t.services.db.selectFrom('messages').select('subject').where('mailbox_id', '=', member.user.mailbox!.id).execute();
    assert.deepEqual(stored.map((m) => m.subject), ['while suspended']);
    const back = await api('PUT', `/api/users/${member.user.id}/status`, a.token, { status: 'active' });
    assert.equal(back.body.status, 'active');
    assert.equal((await h.login(member.user.email)).status, 200);
  });

  it('when the status is not active or suspended, or a field is unknown, then 400', async () => {
    const user = await createUser(a);
    assert.equal((await api('PUT', `/api/users/${user.id}/status`, a.token, { status: 'disabled' })).status, 400);
    assert.equal((await api('PUT', `/api/users/${user.id}/status`, a.token, {})).status, 400);
    assert.equal((await api('PUT', `/api/users/${user.id}/status`, a.token, { status: 'suspended', reason: 'x' })).status, 400);
  });

  it('when a caller suspends itself, then 409', async () => {
    const admin = await h.userWithToken(a, 'admin');
    const res = await api('PUT', `/api/users/${admin.user.id}/status`, admin.token, { status: 'suspended' });
    assert.equal(res.status, 409);
    assert.match(res.body.error ?? '', /cannot suspend your own account/);
  });
});

describe('last owner', () => {
  it('when the only active owner demotes itself, then 409, even with a suspended second owner; with another active owner it works', async () => {
    const c = await h.newTenant('c');
    const demote = await api('PUT', `/api/users/${c.ownerId}`, c.token, { role: 'admin' });
    assert.equal(demote.status, 409);
    assert.match(demote.body.error ?? '', /last active owner/);
    const second = await createUser(c, { role: 'owner' });
    assert.equal((await api('PUT', `/api/users/${second.id}/status`, c.token, { status: 'suspended' })).status, 200);
    assert.equal((await api('PUT', `/api/users/${c.ownerId}`, c.token, { role: 'member' })).status, 409);
    assert.equal((await api('PUT', `/api/users/${second.id}/status`, c.token, { status: 'active' })).status, 200);
    const ok = await api('PUT', `/api/users/${c.ownerId}`, c.token, { role: 'admin' });
    assert.equal(ok.status, 200, ok.text);
    assert.equal(ok.body.role, 'admin');
  });

  it('when two owners demote themselves at the same moment, then exactly one succeeds and one owner remains', async () => {
    for (let i = 0; i < 3; i++) {
      const c = await h.newTenant('race');
      const second = await h.userWithToken(c, 'owner');
      const results = await Promise.all([
        api('PUT', `/api/users/${c.ownerId}`, c.token, { role: 'member' }),
        api('PUT', `/api/users/${second.user.id}`, second.token, { role: 'member' }),
      ]);
      assert.deepEqual(results.map((r) => r.status).sort(), [200, 409], results.map((r) => r.text).join(' | '));
      const owners = await t.services.db.selectFrom('users').select('id').where('tenant_id', '=', c.id).where('role', '=', 'owner').execute();
      assert.equal(owners.length, 1);
    }
  });

  it('when an owner deletes itself, then 409 and it still exists', async () => {
    const c = await h.newTenant('c');
    const res = await api('DELETE', `/api/users/${c.ownerId}`, c.token);
    assert.equal(res.status, 409);
    assert.match(res.body.error ?? '', /cannot delete your own account/);
    assert.equal((await api('GET', `/api/users/${c.ownerId}`, c.token)).status, 200);
  });

  it('when an owner deletes another owner, then 204 (one owner remains)', async () => {
    const c = await h.newTenant('c');
    const second = await createUser(c, { role: 'owner' });
    assert.equal((await api('DELETE', `/api/users/${second.id}`, c.token)).status, 204);
  });
});

describe('deleting users', () => {
  it('when a user is deleted, then its mailbox, messages and blob references go; after collection its own blobs are gone and a shared one stays readable', async () => {
    const doomed = await createUser(a);
    const keeper = await createUser(a);
    const unique = randomBytes(3000);
    const shared = randomBytes(3000);
    assert.match(await sendMail(doomed.email, 'only for doomed', unique), /^250 /);
    assert.match(await sendMail([doomed.email, keeper.email], 'for both', shared), /^250 /);

    const doomedMessages = await t.services.db.selectFrom('messages').select(['id', 'raw_blob_key', 'subject']).where('mailbox_id', '=', doomed.mailbox!.id).execute();
    assert.equal(doomedMessages.length, 2);
    const keysOf = async (ids: string[]): Promise<string[]> =>
      (await t.services.db.selectFrom('attachments').select('blob_key').where('message_id', 'in', ids).execute()).map((r) => r.blob_key);
    const onlyMine = doomedMessages.find((m) => m.subject === 'only for doomed')!;
    const both = doomedMessages.find((m) => m.subject === 'for both')!;
    const uniqueKeys = [onlyMine.raw_blob_key, ...(await keysOf([onlyMine.id]))];
    const sharedKeys = [both.raw_blob_key, ...(await keysOf([both.id]))];
    assert.equal(uniqueKeys.length, 2);
    assert.equal(sharedKeys.length, 2);
    const refcount = async (key: string): Promise<number | null> =>
      (await t.services.db.selectFrom('blobs').select('refcount').where('key', '=', key).executeTakeFirst())?.refcount ?? null;
    for (const k of sharedKeys) assert.equal(await refcount(k), 2);

    const res = await api('DELETE', `/api/users/${doomed.id}`, a.token);
    assert.equal(res.status, 204, res.text);
    assert.equal((await api('GET', `/api/users/${doomed.id}`, a.token)).status, 404);
    assert.equal((await t.services.db.selectFrom('mailboxes').select('id').where('id', '=', doomed.mailbox!.id).execute()).length, 0);
    assert.equal((await t.services.db.selectFrom('folders').select('id').where('mailbox_id', '=', doomed.mailbox!.id).execute()).length, 0);
    assert.equal((await t.services.db.selectFrom('messages').select('id').where('mailbox_id', '=', doomed.mailbox!.id).execute()).length, 0);
    assert.equal((await keysOf(doomedMessages.map((m) => m.id))).length, 0, 'attachments rows gone');
    for (const k of uniqueKeys) assert.equal(await refcount(k), 0, `${k} unreferenced`);
    for (const k of sharedKeys) assert.equal(await refcount(k), 1, `${k} still referenced once`);
    assert.equal((await h.login(doomed.email)).status, 401);

    await t.services.collector.collect();
    for (const k of uniqueKeys) {
      assert.equal(await refcount(k), null, `${k} row collected`);
      assert.equal(await t.services.blobs.stat(k), null, `${k} file collected`);
    }
    const keeperMessage = await t.services.db.selectFrom('messages').select('raw_blob_key').where('mailbox_id', '=', keeper.mailbox!.id).executeTakeFirstOrThrow();
    assert.equal(keeperMessage.raw_blob_key, both.raw_blob_key);
    for (const k of sharedKeys) assert.ok((await readAll(await t.services.blobReader.open(k))).length > 0, `${k} still readable`);
    const attachment = await readAll(await t.services.blobReader.open(sharedKeys[1]!));
    assert.ok(attachment.equals(shared), 'the shared attachment is intact');
  });

  it('when the user is unknown or malformed, then 404', async () => {
    assert.equal((await api('DELETE', '/api/users/00000000-0000-0000-0000-000000000000', a.token)).status, 404);
    assert.equal((await api('DELETE', '/api/users/nope', a.token)).status, 404);
  });
});
