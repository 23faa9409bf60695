/**
 * WebmailService: the logged-in user's own mailbox through /api/webmail (api/routes/
 * webmail.routes.ts): folders with counts, creating and deleting user folders, emptying Trash
 * and Junk, listing and searching messages (mail-search.ts), reading one with its HTML sanitised
 * (html-sanitizer.ts), flags and moves, deleting (to Trash, then for good), attachments, the raw
 * message, uploads to a draft (MailsService recomposes it) and the live event stream
 * (mail-events.ts).
 *
 * Every method works on the caller's own mailbox (mailboxOfUser; none: 403 forbidden) and every
 * id is looked up within it: another user's or tenant's ids, like malformed ones, are 404.
 * Deleting for good releases the blob references and the quota charge in the same transaction
 * as the row (deleteMessage). Every change NOTIFYs in its transaction, so open streams of any
 * API process hear about it on commit.
 */
import type { Readable } from 'node:stream';
import { AppError } from '../core/errors.js';
import { isUuid } from '../core/ids.js';
import type { Db } from '../db/database.js';
import { draftOfCopy, mailboxOfUser } from '../db/mails.repository.js';
import { usageOf } from '../db/mailboxes.repository.js';
import { attachmentsOf, deleteMessage } from '../db/messages.repository.js';
import type { Attachment, Folder, Mailbox, Message, SpecialUse } from '../db/types.js';
import {
  countInFolder,
  deleteAllInFolder,
  deleteDraftOfCopy,
  deleteFolder,
  foldersOf,
  foldersOfUser,
  foldersWithCounts,
  insertFolder,
  listMessages,
  lockFolder,
  messageOfMailbox,
  notifyMailEvents,
  updateMessage,
  type FolderCounts,
  type MailEventPayload,
} from '../db/webmail.repository.js';
import type { MailEvents } from './mail-events.js';
import { folderView, messageView, summary, type DraftView, type FolderView, type MessageSummary, type MessageView } from './webmail-views.js';
import { bad, parseMailQuery, type MailCondition } from './mail-search.js';
import type { DraftFields } from './mail-views.js';
import type { MailsService, UploadedFile } from './mails.service.js';
import type { MessagesService } from './messages.service.js';
import type { Sender } from './submission.service.js';

export interface WebmailOptions {
  /** How often an idle event stream gets a keepalive comment (proxies drop silent connections). */
  keepaliveMs: number;
  /** Event streams one user may hold open at once. */
  maxStreamsPerUser: number;
}

export type { DraftView, FolderView, MessageSummary, MessageView };

export interface ListInput {
  mailbox?: string;
  q?: string;
  limit: number;
  before: { at: Date; id: string } | null;
}

export interface EventSink {
  send(event: MailEventPayload): void;
  close(): void;
}

/** Standard folders in the order the webmail shows them, with the names that address them. */
const STANDARD: { use: SpecialUse; name: string }[] = [
  { use: 'inbox', name: 'inbox' },
  { use: 'drafts', name: 'drafts' },
  { use: 'sent', name: 'sent' },
  { use: 'junk', name: 'junk' },
  { use: 'trash', name: 'trash' },
];
const MAX_FOLDER_NAME_CHARS = 100;

export class WebmailService {
  private readonly streams = new Map<string, number>();

  constructor(
    private readonly db: Db,
    private readonly mails: MailsService,
    private readonly messages: MessagesService,
    private readonly events: MailEvents,
    readonly options: WebmailOptions,
  ) {}

  async listMailboxes(actor: Sender): Promise<{ mailbox: { id: string; address: string; quota_bytes: number; used_bytes: number }; data: FolderView[] }> {
    const mailbox = await this.mailbox(actor);
    const [folders, usage] = await Promise.all([foldersWithCounts(this.db, mailbox.id), usageOf(this.db, mailbox.id)]);
    return {
      mailbox: { id: mailbox.id, address: mailbox.address, quota_bytes: Number(mailbox.quota_bytes), used_bytes: Number(usage.used_bytes) },
      data: sortFolders(folders).map(folderView),
    };
  }

  async createMailbox(actor: Sender, rawName: string): Promise<FolderView> {
    const mailbox = await this.mailbox(actor);
    const name = rawName.trim();
    checkFolderName(name);
    if (STANDARD.some((s) => s.name === name.toLowerCase())) throw new AppError('conflict', `"${name}" is the name of a standard folder`);
    const existing = await foldersOf(this.db, mailbox.id);
    if (existing.some((f) => f.name.toLowerCase() === name.toLowerCase())) throw new AppError('conflict', `a folder named "${name}" already exists`);
    try {
      return folderView({ ...(await insertFolder(this.db, { tenantId: actor.tenantId, mailboxId: mailbox.id, name })), total: 0, unread: 0 });
    } catch (err) {
      // the same name created at the same moment: the unique index decides
      if ((err as { code?: string }).code === '23505') throw new AppError('conflict', `a folder named "${name}" already exists`, { cause: err });
      throw err;
    }
  }

  async deleteMailbox(actor: Sender, id: string): Promise<void> {
    const mailbox = await this.mailbox(actor);
    if (!isUuid(id)) throw folderNotFound(id);
    await this.db.transaction().execute(async (trx) => {
      const folder = await lockFolder(trx, mailbox.id, id);
      if (!folder) throw folderNotFound(id);
      if (folder.special_use) throw new AppError('conflict', `${folder.name} is a standard folder and cannot be deleted`);
      const n = await countInFolder(trx, folder.id);
      if (n > 0) throw new AppError('conflict', `folder "${folder.name}" is not empty: move or delete its ${n} messages first`);
      await deleteFolder(trx, folder.id);
    });
  }

  /** Empties Trash or Junk for good. */
  async emptyMailbox(actor: Sender, id: string): Promise<{ deleted: number }> {
    const mailbox = await this.mailbox(actor);
    const folder = await this.resolveFolder(mailbox, id);
    if (folder.special_use !== 'trash' && folder.special_use !== 'junk') {
      throw new AppError('conflict', `only Trash and Junk can be emptied; move or delete the messages of ${folder.name} one by one`);
    }
    const deleted = await this.db.transaction().execute(async (trx) => {
      const n = await deleteAllInFolder(trx, mailbox.id, folder.id);
      if (n > 0) await notifyMailEvents(trx, [{ mailbox_id: mailbox.id, folder_id: folder.id, reason: 'deleted' }]);
      return n;
    });
    return { deleted };
  }

  async listMessages(actor: Sender, input: ListInput): Promise<MessageSummary[]> {
    // mailbox and folders in one query (the busiest endpoint); no folders: no mailbox, and
    // this.mailbox() says so as every other method does
    let folders = await foldersOfUser(this.db, actor);
    const mailbox = folders.length > 0 ? { id: folders[0]!.mailbox_id } : await this.mailbox(actor);
    if (folders.length === 0) folders = await foldersOf(this.db, mailbox.id);
    const conditions = input.q === undefined ? [] : parseMailQuery(input.q);
    const inTerms = conditions.filter((c): c is Extract<MailCondition, { kind: 'in' }> => c.kind === 'in');
    const anywhere = inTerms.some((c) => c.folder.toLowerCase() === 'anywhere');
    const folderIds = inTerms.filter((c) => c.folder.toLowerCase() !== 'anywhere').map((c) => folderNamed(folders, c.folder).id);
    const searching = input.q !== undefined && input.q.trim() !== '';
    if (input.mailbox !== undefined) folderIds.unshift(findFolder(folders, input.mailbox).id);
    else if (!searching) folderIds.push(standard(folders, 'inbox').id);
    const excludeFolderIds = folderIds.length === 0 && !anywhere ? folders.filter((f) => f.special_use === 'trash' || f.special_use === 'junk').map((f) => f.id) : [];
    const rows = await listMessages(this.db, {
      mailboxId: mailbox.id,
      folderIds: [...new Set(folderIds)],
      excludeFolderIds,
      conditions: conditions.filter((c): c is Exclude<MailCondition, { kind: 'in' }> => c.kind !== 'in'),
      before: input.before,
      limit: input.limit,
    });
    return rows.map(summary);
  }

  async getMessage(actor: Sender, id: string): Promise<MessageView> {
    const mailbox = await this.mailbox(actor);
    const message = await this.ownMessage(mailbox, id);
    const attachments = await attachmentsOf(this.db, message.id);
    const draft = await this.draftOf(actor, message.id);
    return messageView(message, attachments, draft);
  }

  async updateMessage(actor: Sender, id: string, input: { seen?: boolean; flagged?: boolean; mailbox?: string }): Promise<MessageSummary> {
    const mailbox = await this.mailbox(actor);
    if (!isUuid(id)) throw messageNotFound(id);
    const target = input.mailbox === undefined ? undefined : await this.resolveFolder(mailbox, input.mailbox);
    const row = await this.db.transaction().execute(async (trx) => {
      const changed = await updateMessage(trx, mailbox.id, id, { seen: input.seen, flagged: input.flagged, folderId: target?.id });
      if (!changed) throw messageNotFound(id);
      const moved = changed.before !== changed.after.folder_id;
      await notifyMailEvents(
        trx,
        moved
          ? [
              { mailbox_id: mailbox.id, folder_id: changed.before, reason: 'deleted' },
              { mailbox_id: mailbox.id, folder_id: changed.after.folder_id, reason: 'new' },
            ]
          : [{ mailbox_id: mailbox.id, folder_id: changed.after.folder_id, reason: 'changed' }],
      );
      return changed.after;
    });
    return summary(row);
  }

  /** Outside Trash: moved there (the summary). In Trash: deleted for good (null). */
  async deleteMessage(actor: Sender, id: string): Promise<MessageSummary | null> {
    const mailbox = await this.mailbox(actor);
    const message = await this.ownMessage(mailbox, id);
    const trash = standard(await foldersOf(this.db, mailbox.id), 'trash');
    if (message.folder_id !== trash.id) return this.updateMessage(actor, id, { mailbox: trash.id });
    await this.db.transaction().execute(async (trx) => {
      await deleteDraftOfCopy(trx, message.id);
      if (!(await deleteMessage(trx, actor.tenantId, message.id))) throw messageNotFound(id);
      await notifyMailEvents(trx, [{ mailbox_id: mailbox.id, folder_id: message.folder_id, reason: 'deleted' }]);
    });
    return null;
  }

  /** Files added to a draft: it is recomposed and replaced; the new copy as getMessage shows it. */
  async uploadToDraft(actor: Sender, id: string, files: UploadedFile[], ip: string): Promise<MessageView> {
    const mailbox = await this.mailbox(actor);
    const message = await this.ownMessage(mailbox, id);
    const newId = await this.mails.addAttachmentsToDraft(actor, message.id, files, ip);
    return this.getMessage(actor, newId);
  }

  async openAttachment(actor: Sender, id: string, attachmentId: string): Promise<{ attachment: Attachment; content: Readable }> {
    const mailbox = await this.mailbox(actor);
    const message = await this.ownMessage(mailbox, id);
    const attachment = isUuid(attachmentId) ? (await attachmentsOf(this.db, message.id)).find((a) => a.id === attachmentId) : undefined;
    if (!attachment) throw new AppError('not_found', `no attachment ${attachmentId} on message ${id}`);
    return { attachment, content: await this.messages.openAttachment(attachment) };
  }

  async openRaw(actor: Sender, id: string): Promise<{ size: number; content: Readable }> {
    const mailbox = await this.mailbox(actor);
    const message = await this.ownMessage(mailbox, id);
    return { size: Buffer.byteLength(message.trace_headers) + Number(message.raw_size), content: await this.messages.openRaw(message) };
  }

  /** Opens an event stream: at most maxStreamsPerUser per user (429 beyond). Returns its closer. */
  async openEvents(actor: Sender, sink: EventSink): Promise<() => void> {
    const mailbox = await this.mailbox(actor);
    const open = this.streams.get(actor.userId) ?? 0;
    if (open >= this.options.maxStreamsPerUser) {
      throw new AppError('rate_limited', `too many open event streams: at most ${this.options.maxStreamsPerUser} per user; close one first`, { retryAfterSeconds: 5 });
    }
    this.streams.set(actor.userId, open + 1);
    let closed = false;
    const unsubscribe = this.events.subscribe(mailbox.id, { onEvent: (e) => sink.send(e), onClose: () => sink.close() });
    return () => {
      if (closed) return;
      closed = true;
      unsubscribe();
      const left = (this.streams.get(actor.userId) ?? 1) - 1;
      if (left > 0) this.streams.set(actor.userId, left);
      else this.streams.delete(actor.userId);
    };
  }

  // --- lookups ---

  private async mailbox(actor: Sender): Promise<Mailbox> {
    const mailbox = await mailboxOfUser(this.db, actor);
    if (!mailbox) throw new AppError('forbidden', 'your account has no mailbox (ask an admin to give you an address on one of your domains)');
    return mailbox;
  }

  private async ownMessage(mailbox: Mailbox, id: string): Promise<Message> {
    const message = isUuid(id) ? await messageOfMailbox(this.db, mailbox.id, id) : undefined;
    if (!message) throw messageNotFound(id);
    return message;
  }

  private async resolveFolder(mailbox: Mailbox, idOrName: string): Promise<Folder> {
    return findFolder(await foldersOf(this.db, mailbox.id), idOrName);
  }

  private async draftOf(actor: Sender, messageId: string): Promise<DraftView | null> {
    const fields = (await draftOfCopy(this.db, actor, messageId))?.draft as DraftFields | null | undefined;
    if (!fields) return null;
    return { to: fields.to, cc: fields.cc, bcc: fields.bcc, subject: fields.subject, text: fields.text, html: fields.html };
  }

}

// --- folders ---

/** A folder id of the mailbox, or a standard name (INBOX, Drafts, Sent, Junk, Trash; any case). */
function findFolder(folders: Folder[], idOrName: string): Folder {
  const found = isUuid(idOrName)
    ? folders.find((f) => f.id.toLowerCase() === idOrName.toLowerCase())
    : folders.find((f) => f.special_use !== null && f.special_use === STANDARD.find((s) => s.name === idOrName.toLowerCase())?.use);
  if (!found) throw folderNotFound(idOrName);
  return found;
}

/** `in:` of a search: a standard folder's name or a user folder's name, any case; unknown is a 400. */
function folderNamed(folders: Folder[], name: string): Folder {
  const lower = name.toLowerCase();
  const use = STANDARD.find((s) => s.name === lower)?.use;
  const found = use ? folders.find((f) => f.special_use === use) : folders.find((f) => f.name.toLowerCase() === lower);
  if (!found) throw bad(`"in:${name}": there is no folder named ${name}`);
  return found;
}

function standard(folders: Folder[], use: SpecialUse): Folder {
  const found = folders.find((f) => f.special_use === use);
  if (!found) throw new AppError('internal', `the mailbox has no ${use} folder`);
  return found;
}

function sortFolders(folders: FolderCounts[]): FolderCounts[] {
  const rank = (f: Folder): number => (f.special_use ? STANDARD.findIndex((s) => s.use === f.special_use) : STANDARD.length);
  return [...folders].sort((a, b) => rank(a) - rank(b) || a.name.toLowerCase().localeCompare(b.name.toLowerCase()) || a.name.localeCompare(b.name));
}

function checkFolderName(name: string): void {
  let problem: string | null = null;
  if (name === '') problem = 'is empty';
  else if (name.length > MAX_FOLDER_NAME_CHARS) problem = `is longer than ${MAX_FOLDER_NAME_CHARS} characters`;
  // eslint-disable-next-line no-control-regex
  else if (/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/u.test(name)) problem = 'contains control characters';
  else if (name.includes('/')) problem = 'contains "/"';
  if (problem) throw new AppError('validation_failed', `the folder name ${problem}`, { details: [{ in: 'body', path: 'name', message: problem }] });
}

function folderNotFound(id: string): AppError {
  return new AppError('not_found', `no folder ${id} in your mailbox`);
}

function messageNotFound(id: string): AppError {
  return new AppError('not_found', `no message ${id} in your mailbox`);
}
