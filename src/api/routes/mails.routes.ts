/**
 * Sending through the API (API.md "Mails" and webmail compose): /api/mails drafts with
 * multipart attachments and their sending, /api/messages/send-email, and
 * POST /api/webmail/messages. Address, header and recipient rules, sender rules, tenant
 * isolation and the draft lifecycle live in services/mails.service.ts; these handlers only
 * validate shapes and map results. Any authenticated user with a mailbox may use them.
 */
import { pipeline } from 'node:stream/promises';
import { z } from 'zod';
import type { MailsService } from '../../services/mails.service.js';
import { multipartUpload, uploadedFiles } from '../multipart.js';
import { decodeCursor, page, pageQuery } from '../pagination.js';
import { defineRoute, type RouteDeps } from '../route.js';

/** Longest form or JSON element taken for one address; the service refuses what is not one address. */
const ADDRESS_CHARS = 1000;
/** Array elements taken per address field; the total of to, cc and bcc is MAX_RECIPIENTS. */
const ADDRESS_ELEMENTS = 1000;
/** RFC 5322 §2.1.1: a line is at most 998 characters; a subject longer than that is not one people write. */
const SUBJECT_CHARS = 998;

const addresses = z.union([z.string().max(ADDRESS_CHARS), z.array(z.string().max(ADDRESS_CHARS)).max(ADDRESS_ELEMENTS)]);
const subject = z.string().max(SUBJECT_CHARS);
const idParams = z.strictObject({ id: z.string() });

export function registerMailRoutes(deps: RouteDeps, mails: MailsService): void {
  const upload = multipartUpload(['attachments', 'attachments[]'], mails.uploadLimits);

  defineRoute(
    deps,
    {
      method: 'post',
      path: '/api/mails',
      tag: 'mails',
      summary:
        'Save a draft: multipart/form-data with from, to, cc, bcc (one address per field; repeat the field for more), subject, text, html and files in attachments[]. Stored in your Drafts folder',
      auth: 'user',
      upload,
      body: z.strictObject({
        from: z.string().max(ADDRESS_CHARS).optional(),
        to: addresses.optional(),
        cc: addresses.optional(),
        bcc: addresses.optional(),
        subject: subject.optional(),
        text: z.string().optional(),
        html: z.string().optional(),
      }),
      responses: { 201: { description: 'the draft, as GET /api/mails/:id returns it' } },
    },
    async ({ body, caller, ip, req }) => ({ status: 201, body: await mails.createDraft(caller!, body, uploadedFiles(req), ip) }),
  );
  defineRoute(
    deps,
    {
      method: 'get',
      path: '/api/mails',
      tag: 'mails',
      summary: 'Your drafts and sent mail, newest first',
      auth: 'user',
      query: pageQuery,
      responses: { 200: { description: '{data, next_cursor}' } },
    },
    async ({ query, caller }) => {
      const rows = await mails.listMails(caller!, query.limit, decodeCursor(query.cursor));
      return { status: 200, body: page(rows, query.limit, (m) => ({ at: m.created_at, id: m.id })) };
    },
  );
  defineRoute(
    deps,
    {
      method: 'get',
      path: '/api/mails/:id',
      tag: 'mails',
      summary: 'One draft or sent mail with its bodies, attachments and, per recipient, the delivery status (queued, sending, sent, deferred, bounced), attempts, last reply and events',
      auth: 'user',
      params: idParams,
      responses: { 200: { description: 'the mail' } },
    },
    async ({ params, caller }) => ({ status: 200, body: await mails.getMail(caller!, params.id) }),
  );
  defineRoute(
    deps,
    {
      method: 'get',
      path: '/api/mails/:id/attachments/:aid',
      tag: 'mails',
      summary: 'Download one attachment of a draft or sent mail (Content-Disposition: attachment)',
      auth: 'user',
      params: z.strictObject({ id: z.string(), aid: z.string() }),
      responses: { 200: { description: 'the attachment bytes' } },
    },
    async ({ params, caller, res }) => {
      const { attachment, content } = await mails.openAttachment(caller!, params.id, params.aid);
      res.attachment(attachment.filename ?? 'attachment');
      res.setHeader('Content-Type', 'application/octet-stream');
      res.setHeader('Content-Length', String(attachment.size));
      res.status(200);
      await pipeline(content, res);
      return { status: 200 };
    },
  );
  defineRoute(
    deps,
    {
      method: 'post',
      path: '/api/mails/:id/send',
      tag: 'mails',
      summary: 'Send a draft: queued for delivery, its copy moves from Drafts to Sent',
      auth: 'user',
      params: idParams,
      responses: { 202: { description: '{id, status: "queued", recipients}' } },
    },
    async ({ params, caller, ip }) => ({ status: 202, body: await mails.sendDraft(caller!, params.id, ip) }),
  );
  defineRoute(
    deps,
    {
      method: 'delete',
      path: '/api/mails/:id',
      tag: 'mails',
      summary: 'Delete a draft with its Drafts copy; a sent mail cannot be deleted (409)',
      auth: 'user',
      params: idParams,
      responses: { 204: { description: 'deleted' } },
    },
    async ({ params, caller }) => {
      await mails.deleteMail(caller!, params.id);
      return { status: 204 };
    },
  );
  defineRoute(
    deps,
    {
      method: 'post',
      path: '/api/messages/send-email',
      tag: 'mails',
      summary: 'Send at once from your own address: to, cc, bcc are an address or an array of addresses',
      auth: 'user',
      body: z.strictObject({
        to: addresses,
        subject,
        text: z.string().optional(),
        html: z.string().optional(),
        cc: addresses.optional(),
        bcc: addresses.optional(),
      }),
      responses: { 202: { description: '{id, status: "queued", recipients: [{address, status}]}' } },
    },
    async ({ body, caller, ip }) => ({ status: 202, body: await mails.sendEmail(caller!, body, ip) }),
  );
  defineRoute(
    deps,
    {
      method: 'post',
      path: '/api/webmail/messages',
      tag: 'webmail',
      summary:
        'Compose from your own address: sent at once (202), or kept in Drafts with draft: true (201). in_reply_to: the id of a message of yours to answer; attachment_ids: attachments of any message of yours (a forward); replace_draft: the message id of a draft\'s Drafts copy that this replaces (removed with the new draft stored, or once the message is queued)',
      auth: 'user',
      body: z.strictObject({
        to: addresses.optional(),
        cc: addresses.optional(),
        bcc: addresses.optional(),
        subject: subject.optional(),
        text: z.string().optional(),
        html: z.string().optional(),
        in_reply_to: z.string().max(100).optional(),
        draft: z.boolean().optional(),
        attachment_ids: z.array(z.string().max(100)).max(mails.uploadLimits.maxFiles).optional(),
        replace_draft: z.string().max(100).optional(),
      }),
      responses: { 201: { description: 'the draft (stored_message_id: its Drafts copy, the id the webmail uses)' }, 202: { description: '{id, status: "queued", recipients}' } },
    },
    async ({ body, caller, ip }) => {
      const result = await mails.compose(caller!, body, ip);
      return 'draft' in result ? { status: 201, body: result.draft } : { status: 202, body: result.queued };
    },
  );
}

