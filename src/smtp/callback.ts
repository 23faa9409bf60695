/**
 * smtpCallback(): the one wrapper every smtp-server callback is registered through. It awaits
 * the async handler, calls smtp-server's callback exactly once, maps a thrown error through the
 * reply table (anything unclassified → 451 4.3.0; smtp-server on its own would answer 550 and
 * bounce mail during an outage), and answers 451 4.3.0 if the handler has not finished within
 * the timeout. Each refusal is reported once to `onReject` (metrics) with a bounded reason: the
 * error code, `internal` for anything unclassified, `handler_timeout` for the timeout.
 */
import { describeError, isAppError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { smtpReplyFor, toSmtpError } from './reply-codes.js';

type NodeCallback<R> = (err?: Error | null, result?: R) => void;

export function smtpCallback<Args extends unknown[], R>(
  name: string,
  logger: Logger,
  handler: (...args: Args) => Promise<R>,
  timeoutMs: number | null,
  onReject?: (reason: string) => void,
): (...args: [...Args, NodeCallback<R>]) => void {
  return (...all: [...Args, NodeCallback<R>]) => {
    const callback = all[all.length - 1] as NodeCallback<R>;
    const args = all.slice(0, -1) as unknown as Args;
    let called = false;
    let timer: NodeJS.Timeout | undefined;
    const finish = (err: Error | null, result?: R, reason?: string): void => {
      if (called) return;
      called = true;
      if (timer) clearTimeout(timer);
      if (reason !== undefined) onReject?.(reason);
      callback(err, result);
    };
    if (timeoutMs !== null) {
      timer = setTimeout(() => {
        logger.error({ event: 'smtp.callback.failed', handler: name, timeoutMs }, 'SMTP handler timed out');
        finish(toSmtpError({ code: 451, enhanced: '4.3.0', text: 'Timeout while processing, please try again later' }), undefined, 'handler_timeout');
      }, timeoutMs);
    }
    handler(...args).then(
      (result) => finish(null, result),
      (err: unknown) => {
        if (!isAppError(err) || err.kind !== 'permanent') {
          logger.warn({ event: 'smtp.callback.failed', handler: name, err: describeError(err), cause: causeOf(err) }, 'SMTP handler failed');
        }
        finish(toSmtpError(smtpReplyFor(err)), undefined, isAppError(err) ? err.code : 'internal');
      },
    );
  };
}

function causeOf(err: unknown): string | undefined {
  return err instanceof Error && err.cause !== undefined ? describeError(err.cause) : undefined;
}
