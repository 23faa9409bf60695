/**
 * Bearer authentication: verifies the access token (HS256 only, `exp` required), then re-reads
 * the caller from the database so a suspension, a deletion or a role change applies to the very
 * next request rather than when the token expires. Any problem — no header, a malformed,
 * expired or tampered token, `alg: none`, another secret, a refresh token presented as an
 * access token, a user who is gone or suspended — is the same 401, so a client learns nothing
 * about which check failed.
 */
import type { Request } from 'express';
import { AppError } from '../../core/errors.js';
import type { Db } from '../../db/database.js';
import type { UserRole } from '../../db/types.js';
import type { TokenService } from '../../services/token.service.js';

export interface Caller {
  userId: string;
  tenantId: string;
  email: string;
  role: UserRole;
}

/** The token's claims alone (no database): for the rate limiter's key. */
export function bearerClaims(tokens: TokenService, req: Request): Caller {
  const header = req.headers.authorization ?? '';
  const match = /^Bearer ([A-Za-z0-9._~+/=-]+)$/.exec(header);
  if (!match?.[1]) throw new AppError('unauthorized', 'authentication required: send Authorization: Bearer <access token>');
  return tokens.verifyAccessToken(match[1]);
}

export function createAuthenticate(tokens: TokenService, db: Db): (req: Request) => Promise<Caller> {
  return async (req: Request): Promise<Caller> => {
    const claims = bearerClaims(tokens, req);
    const user = await db
      .selectFrom('users')
      .select(['id', 'tenant_id', 'email', 'role', 'status'])
      .where('id', '=', claims.userId)
      .where('tenant_id', '=', claims.tenantId)
      .executeTakeFirst();
    if (!user || user.status !== 'active') throw new AppError('unauthorized', 'invalid or expired token');
    return { userId: user.id, tenantId: user.tenant_id, email: user.email, role: user.role };
  };
}
