/**
 * Is this token active right now? (RFC 7662 §2.2) A verified signature is not enough: the token
 * must not be revoked, and its client must still exist, be enabled, and not have had its tokens
 * revoked wholesale since the token was issued.
 */
import type { Db } from '../db/database.js';
import { findTokenStanding } from './revocation.repository.js';
import type { AccessTokenClaims, TokenVerifier } from './verify-token.js';

export type Inspection =
  | { readonly active: true; readonly claims: AccessTokenClaims }
  /** Claims are present when the token is ours but no longer active. */
  | { readonly active: false; readonly reason: string; readonly claims?: AccessTokenClaims };

export function createTokenInspector(db: Db, verify: TokenVerifier) {
  return async function inspectToken(token: string): Promise<Inspection> {
    const verification = await verify(token);
    if (!verification.ok) return { active: false, reason: verification.reason };
    const { claims } = verification;

    const standing = await findTokenStanding(db, claims.client_id, claims.jti);
    const inactive = (reason: string): Inspection => ({ active: false, reason, claims });
    if (!standing) return inactive('client_deleted');
    if (claims.iat < standing.clientCreatedAt) return inactive('client_deleted');
    if (!standing.enabled) return inactive('client_disabled');
    if (standing.tokensRevokedBefore !== null && claims.iat <= standing.tokensRevokedBefore) return inactive('client_tokens_revoked');
    if (standing.revoked) return inactive('revoked');
    return { active: true, claims };
  };
}

export type TokenInspector = ReturnType<typeof createTokenInspector>;
