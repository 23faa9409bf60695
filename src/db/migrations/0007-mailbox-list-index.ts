/**
 * Migration 0007: a search across folders (GET /api/webmail/messages?q=… without a mailbox, what
 * the webmail's search box sends) is `mailbox_id = $1 AND folder_id NOT IN (Trash, Junk) AND …
 * ORDER BY received_at DESC, id DESC LIMIT 51`. With only (mailbox_id) to go on, PostgreSQL read
 * every message of the mailbox and sorted them: 137 ms for a word in half of 100,000 messages
 * (bench/api-mail.mjs --explain). Ordered by (mailbox_id, received_at DESC, id DESC) it walks the
 * mailbox newest first and stops at the 51st match; a rare word still goes through the GIN index.
 * The new index replaces messages_mailbox_idx, whose every use its first column serves, so the
 * ingest maintains as many indexes as before.
 */
import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE INDEX messages_mailbox_list_idx ON messages (mailbox_id, received_at DESC, id DESC);
    DROP INDEX messages_mailbox_idx;
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE INDEX messages_mailbox_idx ON messages (mailbox_id);
    DROP INDEX messages_mailbox_list_idx;
  `.execute(db);
}
