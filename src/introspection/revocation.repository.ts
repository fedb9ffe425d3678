/** The revocation list and the client facts that decide whether a verified token is still active. */
import type { Db } from '../db/database.js';

export interface TokenStanding {
  readonly enabled: boolean;
  /** Epoch seconds: a token issued before its client existed belongs to a deleted namesake. */
  readonly clientCreatedAt: number;
  readonly tokensRevokedBefore: number | null;
  readonly revoked: boolean;
}

/**
 * One indexed query: the token's client (by primary key) joined with the revocation list (by jti).
 * Undefined when the client no longer exists.
 */
export async function findTokenStanding(db: Db, clientId: string, jti: string): Promise<TokenStanding | undefined> {
  const row = await db
    .selectFrom('clients as c')
    .leftJoin('revoked_tokens as r', (join) => join.on('r.jti', '=', jti).onRef('r.client_id', '=', 'c.client_id'))
    .select(['c.enabled', 'c.created_at', 'c.tokens_revoked_before', 'r.jti as revoked_jti'])
    .where('c.client_id', '=', clientId)
    .executeTakeFirst();
  if (!row) return undefined;
  return {
    enabled: Number(row.enabled) === 1,
    clientCreatedAt: Number(row.created_at),
    tokensRevokedBefore: row.tokens_revoked_before === null ? null : Number(row.tokens_revoked_before),
    revoked: row.revoked_jti !== null,
  };
}

/** Adds a token to the revocation list; resolves to false when it was already there. */
export async function insertRevokedToken(db: Db, token: { jti: string; clientId: string; expiresAt: number }, now: number): Promise<boolean> {
  const result = await db
    .insertInto('revoked_tokens')
    .values({ jti: token.jti, client_id: token.clientId, expires_at: token.expiresAt, revoked_at: now })
    .onConflict((oc) => oc.column('jti').doNothing())
    .executeTakeFirst();
  return Number(result.numInsertedOrUpdatedRows ?? 0n) > 0;
}

/**
 * Seconds an entry outlives its token's expiry (and the leeway): an instance whose clock lags the
 * pruner's, or a clock stepped back, would otherwise judge the token unexpired with its entry gone.
 */
export const REVOCATION_MARGIN = 3600;

/** Drops entries whose token has expired anyway, with a margin; returns how many. */
export async function pruneRevokedTokens(db: Db, now: number, leeway: number): Promise<number> {
  const result = await db.deleteFrom('revoked_tokens').where('expires_at', '<', now - leeway - REVOCATION_MARGIN).executeTakeFirst();
  return Number(result.numDeletedRows);
}
