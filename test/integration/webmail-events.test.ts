/**
 * The webmail's live events (GET /api/webmail/events) against the real server: the stream opens
 * with `ready`, then gets a `mailbox` event within 2 s of a delivery over real SMTP (the ingest
 * statement's NOTIFY, heard by the API's LISTEN connection) and of a change made through the API;
 * another mailbox's changes are not seen; an 11th stream of one user is refused with 429 and a
 * closed stream frees its place; stopping the server ends open streams.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestServer, type TestServer } from '../helpers/harness.js';
import { call } from '../helpers/http.js';
import { deliverSimple } from '../helpers/smtp-client.js';
import { SseEvents } from '../helpers/sse.js';
import { UNTHROTTLED_ENV, usersApi } from '../helpers/users-api.js';

interface Stream {
  status: number;
  headers: Headers;
  /** The next event of `type` (waits at most `ms`). */
  next(type: string, ms?: number): Promise<{ type: string; data: unknown }>;
  close(): void;
}

let t: TestServer;
let alice: { token: string; address: string };
let carol: { token: string; address: string };

before(async () => {
  t = await startTestServer(UNTHROTTLED_ENV);
  const h = usersApi(t);
  const tenant = await h.newTenant('events');
  const a = await h.userWithToken(tenant, 'member');
  const c = await h.userWithToken(tenant, 'member');
  alice = { token: a.token, address: a.user.email };
  carol = { token: c.token, address: c.user.email };
});

let stopped = false;

after(async () => {
  if (!stopped) await t?.stop();
});

async function open(token: string): Promise<Stream> {
  const abort = new AbortController();
  const res = await fetch(`http://127.0.0.1:${t.apiPort}/api/webmail/events`, { headers: { authorization: `Bearer ${token}`, accept: 'text/event-stream' }, signal: abort.signal });
  const events = new SseEvents();
  if (res.ok && res.body) {
    void (async () => {
      try {
        for await (const chunk of res.body!.pipeThrough(new TextDecoderStream())) events.feed(chunk);
      } catch {
        // aborted by close(), or the server went away: either way the stream ended
      }
      events.end();
    })();
  } else {
    await res.text();
  }
  return { status: res.status, headers: res.headers, next: (type, ms) => events.next(type, ms), close: () => abort.abort() };
}

function deliver(to: string, subject: string): Promise<void> {
  return deliverSimple(t.smtpPort, to, subject);
}

describe('webmail events', () => {
  it('when mail is delivered over SMTP or changed through the API, then the stream hears of it within 2 s', async () => {
    const stream = await open(alice.token);
    try {
      assert.equal(stream.status, 200);
      assert.match(stream.headers.get('content-type') ?? '', /^text\/event-stream/);
      assert.equal(stream.headers.get('cache-control'), 'no-cache');
      assert.equal(stream.headers.get('x-accel-buffering'), 'no');
      await stream.next('ready');
      const folders = await call<{ data: { id: string; name: string }[] }>(t.apiPort, 'GET', '/api/webmail/mailboxes', { token: alice.token });
      const inbox = folders.body.data.find((f) => f.name === 'INBOX')!;

      const start = Date.now();
      await deliver(alice.address, 'live one');
      assert.deepEqual((await stream.next('mailbox')).data, { folder_id: inbox.id, reason: 'new' });
      assert.ok(Date.now() - start < 2000);

      const list = await call<{ data: { id: string }[] }>(t.apiPort, 'GET', '/api/webmail/messages', { token: alice.token });
      const id = list.body.data[0]!.id;
      const put = await call(t.apiPort, 'PUT', `/api/webmail/messages/${id}`, { token: alice.token, body: { seen: true } });
      assert.equal(put.status, 200);
      assert.deepEqual((await stream.next('mailbox')).data, { folder_id: inbox.id, reason: 'changed' });

      // carol's mail is not alice's business
      await deliver(carol.address, 'not for alice');
      await assert.rejects(stream.next('mailbox', 500), /no mailbox event/);
    } finally {
      stream.close();
    }
  });

  it('when a user opens an 11th stream, then 429; closing one frees a place', async () => {
    const streams: Stream[] = [];
    try {
      for (let i = 0; i < 10; i++) {
        const s = await open(carol.token);
        assert.equal(s.status, 200);
        await s.next('ready');
        streams.push(s);
      }
      const eleventh = await open(carol.token);
      assert.equal(eleventh.status, 429);
      // another user is not affected
      const other = await open(alice.token);
      assert.equal(other.status, 200);
      other.close();
      streams.shift()!.close();
      let again: Stream | null = null;
      for (let i = 0; i < 50 && again?.status !== 200; i++) {
        again = await open(carol.token);
        if (again.status !== 200) await new Promise((r) => setTimeout(r, 20));
      }
      assert.equal(again!.status, 200);
      streams.push(again!);
    } finally {
      for (const s of streams) s.close();
    }
  });

  it('when the caller is not authenticated, then 401 and no stream', async () => {
    const res = await fetch(`http://127.0.0.1:${t.apiPort}/api/webmail/events`);
    assert.equal(res.status, 401);
    await res.text();
  });

  it('when the server stops, then open streams end and the stop does not wait for them', async () => {
    const stream = await open(alice.token);
    await stream.next('ready');
    stopped = true;
    const stop = t.stop();
    const timeout = new Promise<never>((_, reject) => setTimeout(() => reject(new Error('the server did not stop within 10 s')), 10_000).unref());
    await Promise.race([stop, timeout]);
    await stream.next('end', 2000);
  });
});
