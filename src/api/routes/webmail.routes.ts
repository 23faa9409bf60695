/**
 * /api/webmail (the logged-in user's own mailbox; API.md "Webmail"): folders, message lists and
 * search, reading, flags and moves, deletion, attachments, the raw message, uploads to a draft
 * and the live event stream (Server-Sent Events). Composing is POST /api/webmail/messages in
 * mails.routes.ts. The rules live in services/webmail.service.ts; these handlers validate shapes,
 * stream bytes and write the event stream.
 */
import { pipeline } from 'node:stream/promises';
import { z } from 'zod';
import type { MailEventPayload } from '../../db/webmail.repository.js';
import { MAX_QUERY_CHARS } from '../../services/mail-search.js';
import type { WebmailService } from '../../services/webmail.service.js';
import type { MailsService } from '../../services/mails.service.js';
import { multipartUpload, uploadedFiles } from '../multipart.js';
import { decodeCursor, page, pageQuery } from '../pagination.js';
import { defineRoute, type RouteDeps } from '../route.js';

const idParams = z.strictObject({ id: z.string() });
const folderRef = z.string().min(1).max(100);

export function registerWebmailRoutes(deps: RouteDeps, webmail: WebmailService, mails: MailsService): void {
  registerFolderRoutes(deps, webmail);
  registerMessageRoutes(deps, webmail);
  registerContentRoutes(deps, webmail, mails);
  registerEventRoute(deps, webmail);
}

function registerFolderRoutes(deps: RouteDeps, webmail: WebmailService): void {
  defineRoute(
    deps,
    {
      method: 'get',
      path: '/api/webmail/mailboxes',
      tag: 'webmail',
      summary: 'Your mailbox (address, quota, usage) and its folders with total and unread counts: inbox, drafts, sent, junk, trash, then your folders by name',
      auth: 'user',
      responses: { 200: { description: '{mailbox, data: [{id, name, special_use, total, unread}]}' } },
    },
    async ({ caller }) => ({ status: 200, body: await webmail.listMailboxes(caller!) }),
  );
  defineRoute(
    deps,
    {
      method: 'post',
      path: '/api/webmail/mailboxes',
      tag: 'webmail',
      summary: 'Create a folder: 1-100 characters, no control characters or "/"; 409 when the name (any case) exists or is a standard one',
      auth: 'user',
      body: z.strictObject({ name: z.string().max(1000) }),
      responses: { 201: { description: 'the folder' } },
    },
    async ({ body, caller }) => ({ status: 201, body: await webmail.createMailbox(caller!, body.name) }),
  );
  defineRoute(
    deps,
    {
      method: 'delete',
      path: '/api/webmail/mailboxes/:id',
      tag: 'webmail',
      summary: 'Delete an empty folder of yours (standard folders and folders with messages: 409)',
      auth: 'user',
      params: idParams,
      responses: { 204: { description: 'deleted' } },
    },
    async ({ params, caller }) => {
      await webmail.deleteMailbox(caller!, params.id);
      return { status: 204 };
    },
  );
  defineRoute(
    deps,
    {
      method: 'delete',
      path: '/api/webmail/mailboxes/:id/messages',
      tag: 'webmail',
      summary: 'Empty Trash or Junk for good (other folders: 409)',
      auth: 'user',
      params: idParams,
      responses: { 200: { description: '{deleted: n}' } },
    },
    async ({ params, caller }) => ({ status: 200, body: await webmail.emptyMailbox(caller!, params.id) }),
  );
}

function registerMessageRoutes(deps: RouteDeps, webmail: WebmailService): void {
  defineRoute(
    deps,
    {
      method: 'get',
      path: '/api/webmail/messages',
      tag: 'webmail',
      summary:
        'Messages newest first. mailbox: a folder id or INBOX/Drafts/Sent/Junk/Trash (default INBOX; with q and no mailbox: every folder but Trash and Junk). q: from: to: cc: subject: has:attachment is:unread|read|flagged|starred|answered before:/after:YYYY-MM-DD in:<folder>|anywhere, other words full-text',
      auth: 'user',
      query: pageQuery.extend({ mailbox: folderRef.optional(), q: z.string().max(MAX_QUERY_CHARS).optional() }),
      responses: { 200: { description: '{data: [summary], next_cursor}' } },
    },
    async ({ query, caller }) => {
      const rows = await webmail.listMessages(caller!, { mailbox: query.mailbox, q: query.q, limit: query.limit, before: decodeCursor(query.cursor) });
      return { status: 200, body: page(rows, query.limit, (m) => ({ at: m.date, id: m.id })) };
    },
  );
  defineRoute(
    deps,
    {
      method: 'get',
      path: '/api/webmail/messages/:id',
      tag: 'webmail',
      summary: 'One message: headers, text, sanitised html (remote_content: it loads remote images), attachments, SPF/DKIM/DMARC results, and the draft fields when it is a draft. Does not mark it read',
      auth: 'user',
      params: idParams,
      responses: { 200: { description: 'the message' } },
    },
    async ({ params, caller }) => ({ status: 200, body: await webmail.getMessage(caller!, params.id) }),
  );
  defineRoute(
    deps,
    {
      method: 'put',
      path: '/api/webmail/messages/:id',
      tag: 'webmail',
      summary: 'Set seen and/or flagged, or move (mailbox: a folder id or standard name)',
      auth: 'user',
      params: idParams,
      body: z
        .strictObject({ seen: z.boolean().optional(), flagged: z.boolean().optional(), mailbox: folderRef.optional() })
        .refine((b) => b.seen !== undefined || b.flagged !== undefined || b.mailbox !== undefined, { message: 'give at least one of seen, flagged, mailbox' }),
      responses: { 200: { description: 'the message summary' } },
    },
    async ({ params, body, caller }) => ({ status: 200, body: await webmail.updateMessage(caller!, params.id, body) }),
  );
  defineRoute(
    deps,
    {
      method: 'delete',
      path: '/api/webmail/messages/:id',
      tag: 'webmail',
      summary: 'Move to Trash (200, the summary); a message already in Trash is deleted for good (204)',
      auth: 'user',
      params: idParams,
      responses: { 200: { description: 'moved to Trash' }, 204: { description: 'deleted for good' } },
    },
    async ({ params, caller }) => {
      const moved = await webmail.deleteMessage(caller!, params.id);
      return moved ? { status: 200, body: moved } : { status: 204 };
    },
  );
}

function registerContentRoutes(deps: RouteDeps, webmail: WebmailService, mails: MailsService): void {
  defineRoute(
    deps,
    {
      method: 'post',
      path: '/api/webmail/messages/:id/attachments',
      tag: 'webmail',
      summary: 'Add files (multipart field attachments) to a draft, given by its Drafts copy: the draft is replaced by one with the files (a NEW id; 409 when not a draft)',
      auth: 'user',
      params: idParams,
      upload: multipartUpload(['attachments', 'attachments[]'], mails.uploadLimits),
      body: z.strictObject({}),
      responses: { 201: { description: 'the new draft, as GET /api/webmail/messages/:id returns it' } },
    },
    async ({ params, caller, ip, req }) => ({ status: 201, body: await webmail.uploadToDraft(caller!, params.id, uploadedFiles(req), ip) }),
  );
  defineRoute(
    deps,
    {
      method: 'get',
      path: '/api/webmail/messages/:id/attachments/:aid',
      tag: 'webmail',
      summary: 'Download one attachment (Content-Disposition: attachment, application/octet-stream)',
      auth: 'user',
      params: z.strictObject({ id: z.string(), aid: z.string() }),
      responses: { 200: { description: 'the attachment bytes' } },
    },
    async ({ params, caller, res }) => {
      const { attachment, content } = await webmail.openAttachment(caller!, params.id, params.aid);
      res.attachment(attachment.filename ?? 'attachment');
      res.setHeader('Content-Type', 'application/octet-stream');
      res.setHeader('Content-Length', String(attachment.size));
      res.setHeader('X-Content-Type-Options', 'nosniff');
      res.status(200);
      await pipeline(content, res);
      return { status: 200 };
    },
  );
  defineRoute(
    deps,
    {
      method: 'get',
      path: '/api/webmail/messages/:id/raw',
      tag: 'webmail',
      summary: 'The message as stored (RFC 5322, message/rfc822), as a download',
      auth: 'user',
      params: idParams,
      responses: { 200: { description: 'the raw message' } },
    },
    async ({ params, caller, res }) => {
      const { size, content } = await webmail.openRaw(caller!, params.id);
      res.setHeader('Content-Type', 'message/rfc822');
      res.setHeader('Content-Disposition', `attachment; filename="${params.id}.eml"`);
      res.setHeader('Content-Length', String(size));
      res.setHeader('X-Content-Type-Options', 'nosniff');
      res.status(200);
      await pipeline(content, res);
      return { status: 200 };
    },
  );
}

function registerEventRoute(deps: RouteDeps, webmail: WebmailService): void {
  defineRoute(
    deps,
    {
      method: 'get',
      path: '/api/webmail/events',
      tag: 'webmail',
      summary:
        'Server-Sent Events: `ready` at open, then `mailbox` {folder_id, reason: new|changed|deleted} on every change to your mailbox; a keepalive comment every 25 s. At most 10 streams per user (429)',
      auth: 'user',
      responses: { 200: { description: 'text/event-stream' } },
    },
    async ({ caller, res }) => {
      const close = await webmail.openEvents(caller!, {
        send: (e: MailEventPayload) => res.write(`event: mailbox\ndata: ${JSON.stringify({ folder_id: e.folder_id, reason: e.reason })}\n\n`),
        // the server is stopping: ending the response lets the HTTP server close
        close: () => {
          if (!res.writableEnded) res.end();
        },
      });
      res.status(200);
      res.setHeader('Content-Type', 'text/event-stream; charset=utf-8');
      res.setHeader('Cache-Control', 'no-cache');
      res.setHeader('X-Accel-Buffering', 'no');
      res.flushHeaders();
      res.write('event: ready\ndata: {}\n\n');
      const keepalive = setInterval(() => res.write(': keepalive\n\n'), webmail.options.keepaliveMs);
      // the client went away, or the stream was ended above
      const cleanup = (): void => {
        clearInterval(keepalive);
        close();
      };
      res.on('close', cleanup);
      if (res.closed) cleanup();
      return { status: 200 };
    },
  );
}

