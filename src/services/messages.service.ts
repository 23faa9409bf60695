/**
 * MessagesService: reading stored mail (the admin CLI now; the webmail API later). The raw
 * message is our trace header fields followed by the stored blob, byte for byte as received,
 * read through BlobReader (from its database row or the blob store).
 */
import { Readable } from 'node:stream';
import { AppError } from '../core/errors.js';
import type { Db } from '../db/database.js';
import { findByAddress } from '../db/mailboxes.repository.js';
import { attachmentsOf, getById, listByMailbox, type MessageSummary } from '../db/messages.repository.js';
import type { Attachment, Message } from '../db/types.js';
import type { BlobReader } from './blob-reader.service.js';

export class MessagesService {
  constructor(
    private readonly db: Db,
    private readonly blobs: BlobReader,
  ) {}

  async listMessages(address: string, limit: number): Promise<MessageSummary[]> {
    const mailbox = await findByAddress(this.db, address.trim().toLowerCase());
    if (!mailbox) throw new AppError('not_found', `no mailbox ${address}`);
    return listByMailbox(this.db, mailbox.id, limit);
  }

  async getMessage(id: string): Promise<{ message: Message; attachments: Attachment[] }> {
    if (!/^[0-9a-f-]{36}$/i.test(id)) throw new AppError('not_found', `no message ${id}`);
    const message = await getById(this.db, id);
    if (!message) throw new AppError('not_found', `no message ${id}`);
    return { message, attachments: await attachmentsOf(this.db, id) };
  }

  /** The full RFC 5322 message as stored: trace headers, then the original bytes. */
  async openRaw(message: Pick<Message, 'trace_headers' | 'raw_blob_key'>): Promise<Readable> {
    const body = await this.blobs.open(message.raw_blob_key);
    return Readable.from(
      (async function* () {
        yield Buffer.from(message.trace_headers);
        yield* body;
      })(),
    );
  }

  /** The decoded bytes of one attachment. */
  openAttachment(attachment: Pick<Attachment, 'blob_key'>): Promise<Readable> {
    return this.blobs.open(attachment.blob_key);
  }
}
