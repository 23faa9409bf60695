/**
 * onAuth: AUTH PLAIN and LOGIN (RFC 4954) against the users' passwords, through the same check
 * and lockout counters as the API login (AuthService.verifyCredentials): wrong password 535
 * 5.7.8, suspended account 535 5.7.8 (with its own text), locked out 454 4.7.0. The SASL
 * authorization identity must be empty or the login itself: nobody logs in as one user to act
 * as another. smtp-server only offers AUTH over TLS (allowInsecureAuth is off).
 */
import type { SMTPServerAuthentication, SMTPServerAuthenticationResponse, SMTPServerSession } from 'smtp-server';
import { AppError, isAppError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { AuthService } from '../services/auth.service.js';
import type { Sender } from '../services/submission.service.js';

export function createOnAuth(auth: AuthService, logger: Logger) {
  return async (credentials: SMTPServerAuthentication, session: SMTPServerSession): Promise<SMTPServerAuthenticationResponse> => {
    const login = (credentials.username ?? '').trim();
    const authzid = (credentials as { authzid?: string }).authzid ?? '';
    if (authzid && authzid.trim().toLowerCase() !== login.toLowerCase()) {
      logger.info({ event: 'smtp.auth.failed', cid: session.id, reason: 'authzid' }, 'authorization identity refused');
      throw new AppError('unauthorized', 'authorization identity must be empty or equal to the login');
    }
    try {
      const user = await auth.verifyCredentials(login, credentials.password ?? '', session.remoteAddress, 'smtp.auth');
      const sender: Sender = { userId: user.id, tenantId: user.tenant_id, role: user.role, email: user.email };
      logger.info({ event: 'smtp.auth.ok', cid: session.id, user: user.id }, 'authenticated');
      return { user: sender };
    } catch (err) {
      if (isAppError(err)) logger.info({ event: 'smtp.auth.failed', cid: session.id, code: err.code }, 'authentication failed');
      if (isAppError(err) && err.code === 'rate_limited') throw new AppError('auth_locked', err.message, { retryAfterSeconds: err.retryAfterSeconds });
      if (isAppError(err) && err.code === 'unauthorized') throw new AppError('unauthorized', 'authentication credentials invalid');
      throw err;
    }
  };
}

/** The logged-in sender of a session, or null (an MX session from another server). */
export function sessionSender(session: SMTPServerSession): Sender | null {
  const user = session.user as Sender | undefined;
  return user && typeof user === 'object' && typeof user.userId === 'string' ? user : null;
}
