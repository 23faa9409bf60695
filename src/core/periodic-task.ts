/**
 * PeriodicTask: a background job run on an interval (worker role) and on demand, one run at a
 * time: a call while a run is in progress shares that run. A failed run is logged and the next
 * interval tries again; stop() waits for the run in progress.
 */
import { describeError } from './errors.js';
import type { Logger } from './logger.js';

export class PeriodicTask<T> {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<T> | null = null;

  constructor(
    private readonly task: () => Promise<T>,
    private readonly onError: (err: unknown) => void,
  ) {}

  static logging<T>(task: () => Promise<T>, logger: Logger, what: string, fields: Record<string, unknown> = {}): PeriodicTask<T> {
    return new PeriodicTask(task, (err) => logger.error({ ...fields, err: describeError(err) }, `${what} failed`));
  }

  start(intervalMs: number): void {
    this.timer = setInterval(() => {
      this.run().catch(this.onError);
    }, intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.running?.catch(() => undefined);
  }

  run(): Promise<T> {
    this.running ??= this.task().finally(() => {
      this.running = null;
    });
    return this.running;
  }
}
