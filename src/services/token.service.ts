/**
 * TokenService: access tokens (JWT HS256, 15 minutes, `exp` required, claims sub, tenant_id,
 * email, role) and refresh tokens (opaque random strings, 7 days, stored as SHA-256 hashes).
 * Refresh tokens rotate on every use; presenting a token that was already used revokes its whole
 * family (RFC 6819 §5.2.2.3: a stolen token and its legitimate twin cannot both live on).
 */
import { createHash, createSecretKey, randomBytes, randomUUID, type KeyObject } from 'node:crypto';
import jwt from 'jsonwebtoken';
import { sql } from 'kysely';
import { AppError } from '../core/errors.js';
import type { Db } from '../db/database.js';
import type { UserRole } from '../db/types.js';
import type { Caller } from '../api/middleware/authenticate.js';

export const ACCESS_TOKEN_TTL_SECONDS = 15 * 60;
export const REFRESH_TOKEN_TTL_MS = 7 * 24 * 3600 * 1000;

const INVALID = 'invalid or expired token';

export interface TokenPair {
  access_token: string;
  refresh_token: string;
  expires_in: number;
}

export class TokenService {
  /**
   * The secret as a KeyObject, made once: given a string, jsonwebtoken first tries it as a PEM
   * public key on every verify and builds the secret key after that throws, which cost about
   * 0.2 ms of CPU per API request (bench/api-mail.mjs profile).
   */
  private readonly key: KeyObject;

  constructor(
    private readonly db: Db,
    secret: string,
  ) {
    this.key = createSecretKey(Buffer.from(secret));
  }

  issueAccessToken(user: { id: string; tenant_id: string; email: string; role: UserRole }): string {
    return jwt.sign({ tenant_id: user.tenant_id, email: user.email, role: user.role, typ: 'access' }, this.key, {
      algorithm: 'HS256',
      expiresIn: ACCESS_TOKEN_TTL_SECONDS,
      subject: user.id,
    });
  }

  verifyAccessToken(token: string): Caller {
    let payload: jwt.JwtPayload | string;
    try {
      payload = jwt.verify(token, this.key, { algorithms: ['HS256'] });
    } catch {
      throw new AppError('unauthorized', INVALID);
    }
    if (
      typeof payload !== 'object' ||
      typeof payload.exp !== 'number' ||
      payload.typ !== 'access' ||
      typeof payload.sub !== 'string' ||
      typeof payload.tenant_id !== 'string' ||
      typeof payload.email !== 'string' ||
      !['owner', 'admin', 'member'].includes(payload.role as string)
    ) {
      throw new AppError('unauthorized', INVALID);
    }
    return { userId: payload.sub, tenantId: payload.tenant_id, email: payload.email, role: payload.role as UserRole };
  }

  /** A new pair; `familyId` continues a rotation chain, none starts one (login). */
  async issuePair(user: { id: string; tenant_id: string; email: string; role: UserRole }, familyId?: string): Promise<TokenPair> {
    const refresh = randomBytes(32).toString('base64url');
    await this.db
      .insertInto('refresh_tokens')
      .values({
        tenant_id: user.tenant_id,
        user_id: user.id,
        family_id: familyId ?? randomUUID(),
        token_hash: hash(refresh),
        expires_at: new Date(Date.now() + REFRESH_TOKEN_TTL_MS),
      })
      .execute();
    return { access_token: this.issueAccessToken(user), refresh_token: refresh, expires_in: ACCESS_TOKEN_TTL_SECONDS };
  }

  /**
   * Spends a refresh token: returns its user and family for the next pair. A token used before
   * revokes its family; unknown, expired and revoked tokens are all the same 401.
   */
  async spendRefreshToken(token: string): Promise<{ userId: string; familyId: string }> {
    const row = await this.db.selectFrom('refresh_tokens').selectAll().where('token_hash', '=', hash(token)).executeTakeFirst();
    if (!row || row.revoked_at || row.expires_at.getTime() <= Date.now()) throw new AppError('unauthorized', INVALID);
    const spent = await this.db
      .updateTable('refresh_tokens')
      .set({ used_at: sql`now()` })
      .where('id', '=', row.id)
      .where('used_at', 'is', null)
      .where('revoked_at', 'is', null)
      .returning('id')
      .executeTakeFirst();
    if (!spent) {
      // reuse of a spent token: someone else holds a copy. End the whole chain.
      await this.revokeFamily(row.family_id);
      throw new AppError('unauthorized', INVALID);
    }
    return { userId: row.user_id, familyId: row.family_id };
  }

  /** Logout: the token's family stops working. Unknown tokens are ignored (idempotent). */
  async revoke(token: string): Promise<{ userId: string; tenantId: string } | null> {
    const row = await this.db.selectFrom('refresh_tokens').select(['family_id', 'user_id', 'tenant_id']).where('token_hash', '=', hash(token)).executeTakeFirst();
    if (!row) return null;
    await this.revokeFamily(row.family_id);
    return { userId: row.user_id, tenantId: row.tenant_id };
  }

  async revokeAllForUser(userId: string): Promise<void> {
    await this.db.updateTable('refresh_tokens').set({ revoked_at: sql`now()` }).where('user_id', '=', userId).where('revoked_at', 'is', null).execute();
  }

  private async revokeFamily(familyId: string): Promise<void> {
    await this.db.updateTable('refresh_tokens').set({ revoked_at: sql`now()` }).where('family_id', '=', familyId).where('revoked_at', 'is', null).execute();
  }
}

function hash(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}
