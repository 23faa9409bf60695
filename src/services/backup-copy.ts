/**
 * COPY ... TO STDOUT and COPY ... FROM STDIN on a `pg` client, for backup and restore. The `pg`
 * package speaks the protocol's copy messages but offers no API for them (pg-copy-streams does,
 * and is not a dependency), so these are the two small "submittable" objects the client drives:
 * it calls submit() when the connection is free and hands every copy message of that query to
 * the handle*() methods.
 *
 * Back-pressure both ways: COPY TO pauses the socket while the sink's buffer is full, COPY FROM
 * waits for the socket to drain before sending more, so a table of any size streams in bounded
 * memory. Text format: one CopyData message is one row, which is how rows are counted.
 * Protocol: PostgreSQL frontend/backend protocol, "COPY Operations" (55.2.6).
 */
import { once } from 'node:events';
import type { Socket } from 'node:net';
import type { Readable, Writable } from 'node:stream';
import type pg from 'pg';

/** What the submittables use of pg's internal Connection. */
interface PgConnection {
  stream: Socket;
  query(text: string): void;
  sendCopyFromChunk(chunk: Buffer): void;
  endCopyFrom(): void;
  sendCopyFail(message: string): void;
}

abstract class CopyQuery {
  protected error: Error | null = null;
  private settled = false;
  readonly done: Promise<number>;
  private resolveDone!: (rows: number) => void;
  private rejectDone!: (err: Error) => void;

  constructor(private readonly text: string) {
    this.done = new Promise<number>((resolve, reject) => {
      this.resolveDone = resolve;
      this.rejectDone = reject;
    });
  }

  submit(connection: PgConnection): void {
    connection.query(this.text);
  }

  protected abstract rowCount(): number;

  handleError(err: Error): void {
    this.error ??= err;
    this.settle();
  }

  handleReadyForQuery(): void {
    this.settle();
  }

  // not sent for COPY; present because the client may call them on any active query
  handleRowDescription(): void {}
  handleDataRow(): void {}
  handleEmptyQuery(): void {}
  handlePortalSuspended(): void {}

  protected settle(): void {
    if (this.settled) return;
    this.settled = true;
    if (this.error) this.rejectDone(this.error);
    else this.resolveDone(this.rowCount());
  }
}

class CopyOut extends CopyQuery {
  private rows = 0;
  /** Set while the socket is paused for the sink to drain. */
  private resume: (() => void) | null = null;

  constructor(
    text: string,
    private readonly sink: Writable,
  ) {
    super(text);
  }

  handleCopyData(message: { chunk: Buffer }, connection: PgConnection): void {
    this.rows++;
    if (!this.sink.write(message.chunk) && !this.resume) {
      connection.stream.pause();
      this.resume = () => {
        this.sink.off('drain', this.resume!);
        this.resume = null;
        connection.stream.resume();
      };
      this.sink.once('drain', this.resume);
    }
  }

  protected override settle(): void {
    // the rest of the COPY may have arrived in the chunk already read; once the caller ends the
    // sink, 'drain' never comes, and a socket left paused would never hear the next reply
    this.resume?.();
    super.settle();
  }

  handleCommandComplete(): void {}

  handleCopyInResponse(connection: PgConnection): void {
    // a COPY FROM sent through copyOut() by mistake: end it rather than hang
    connection.sendCopyFail('expected COPY TO STDOUT');
  }

  protected rowCount(): number {
    return this.rows;
  }
}

class CopyIn extends CopyQuery {
  private rows = 0;

  constructor(
    text: string,
    private readonly source: Readable,
  ) {
    super(text);
  }

  handleCopyInResponse(connection: PgConnection): void {
    this.pump(connection).catch((err: unknown) => {
      this.error ??= err instanceof Error ? err : new Error(String(err));
      connection.sendCopyFail(this.error.message);
    });
  }

  private async pump(connection: PgConnection): Promise<void> {
    for await (const chunk of this.source) {
      // the server refused the data (bad row, constraint): it ignores the rest, so stop reading
      if (this.error) {
        this.source.destroy();
        return;
      }
      connection.sendCopyFromChunk(chunk as Buffer);
      if (connection.stream.writableNeedDrain) await once(connection.stream, 'drain');
    }
    connection.endCopyFrom();
  }

  handleCopyData(): void {}

  handleCommandComplete(message: { text: string }): void {
    this.rows = Number(/COPY (\d+)/.exec(message.text)?.[1] ?? 0);
  }

  protected rowCount(): number {
    return this.rows;
  }
}

/** Runs `COPY ... TO STDOUT` on `client`, writing the data to `sink` (not ended); resolves to the row count. */
export async function copyOut(client: pg.ClientBase, text: string, sink: Writable): Promise<number> {
  const query = new CopyOut(text, sink);
  void client.query(query as unknown as pg.Submittable);
  return query.done;
}

/** Runs `COPY ... FROM STDIN` on `client` with the data read from `source`; resolves to the row count. */
export async function copyIn(client: pg.ClientBase, text: string, source: Readable): Promise<number> {
  const query = new CopyIn(text, source);
  void client.query(query as unknown as pg.Submittable);
  return query.done;
}
