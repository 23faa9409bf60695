/**
 * onConnect / onClose: connection policy at accept time (per-IP cap, shutdown) and the
 * matching bookkeeping when the session ends.
 */
import type { SMTPServerSession } from 'smtp-server';
import { AppError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { SessionRegistry } from './session-registry.js';

export function createOnConnect(registry: SessionRegistry, logger: Logger) {
  return (session: SMTPServerSession): Promise<void> => {
    if (registry.shuttingDown) {
      return Promise.reject(new AppError('shutting_down', 'Server shutting down, please try again later'));
    }
    if (!registry.open(session.id, session.remoteAddress)) {
      logger.info({ event: 'smtp.connection.rejected', cid: session.id, ip: session.remoteAddress, reason: 'per_ip_limit' }, 'too many connections');
      return Promise.reject(new AppError('too_many_connections', 'Too many connections from your address, try again later'));
    }
    return Promise.resolve();
  };
}

export function createOnClose(registry: SessionRegistry) {
  return (session: SMTPServerSession): void => {
    registry.close(session.id);
  };
}
