/**
 * Server-sent events as a test reads them: feed() takes the stream's text as it arrives (over
 * fetch, or a raw https request through nginx), splits it into events (`event:` and `data:`
 * lines, JSON data; a `:` line is a `comment`, the keepalive), and next(type) waits for the next
 * event of that type, failing with what did arrive. end() marks the stream closed (an `end` event).
 */
export interface SseEvent {
  type: string;
  data: unknown;
}

export class SseEvents {
  private readonly events: SseEvent[] = [];
  private readonly waiters: (() => void)[] = [];
  private buffer = '';

  feed(chunk: string): void {
    this.buffer += chunk;
    let end: number;
    while ((end = this.buffer.indexOf('\n\n')) >= 0) {
      const block = this.buffer.slice(0, end);
      this.buffer = this.buffer.slice(end + 2);
      const type = /^event: (.*)$/m.exec(block)?.[1] ?? (block.startsWith(':') ? 'comment' : 'message');
      const data = /^data: (.*)$/m.exec(block)?.[1];
      this.events.push({ type, data: data === undefined ? undefined : JSON.parse(data) });
    }
    this.wake();
  }

  end(): void {
    this.events.push({ type: 'end', data: undefined });
    this.wake();
  }

  /** The next event of `type`, dropping those before it; waits at most `ms`. */
  async next(type: string, ms = 2000): Promise<SseEvent> {
    const deadline = Date.now() + ms;
    for (;;) {
      const at = this.events.findIndex((e) => e.type === type);
      if (at >= 0) return this.events.splice(0, at + 1)[at]!;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no ${type} event within ${ms} ms (saw ${JSON.stringify(this.events)})`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }
}
