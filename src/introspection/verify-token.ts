/**
 * Is this string an access token Tessera issued and still accepts? jose does the checks, in its
 * order: decode, header (RS256, typ at+jwt), key by kid from our keystore, signature, claims
 * (iss, exp and iat with a small leeway); a token it accepted before skips them while they cannot
 * have changed (verified-tokens.ts). Any failure is a reason code, never an exception: callers
 * answer `{"active": false}` or ignore the token, and never a 5xx.
 */
import { errors as joseErrors, jwtVerify, type JWTHeaderParameters } from 'jose';

import { epochSeconds, type Clock } from '../clock.js';
import type { Keystore } from '../keys/keystore.js';
import { SIGNING_ALG } from '../keys/keystore.js';
import { VerifiedTokens } from './verified-tokens.js';

/** RFC 9068 §2.2 claims, as Tessera issues them. */
export interface AccessTokenClaims {
  readonly iss: string;
  readonly sub: string;
  readonly client_id: string;
  readonly aud: string;
  readonly iat: number;
  readonly exp: number;
  readonly jti: string;
  readonly scope?: string;
}

export type Verification = { readonly ok: true; readonly claims: AccessTokenClaims } | { readonly ok: false; readonly reason: string };

export interface VerifierOptions {
  readonly keys: { readonly current: Keystore };
  readonly issuer: string;
  readonly clock: Clock;
  /** Seconds of clock skew tolerated on exp and iat. */
  readonly leeway: number;
  /** No token of ours lives longer than ACCESS_TOKEN_MAX_TTL; older iat values are not ours. */
  readonly maxTokenAge: number;
  /** Most verified tokens remembered at once (verified-tokens.ts); 0 verifies every time. */
  readonly cacheSize: number;
}

// Ours are about 900 characters; anything far larger is not worth parsing.
const MAX_TOKEN_LENGTH = 8 * 1024;
// RFC 7515 §7.1: three base64url parts without padding. jose's decoder also takes padding and
// whitespace, which would let one token be presented under many spellings (and cache entries).
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

class UnknownKid extends Error {}

const JOSE_REASONS: Readonly<Record<string, string>> = {
  [joseErrors.JWTExpired.code]: 'expired',
  [joseErrors.JWSSignatureVerificationFailed.code]: 'bad_signature',
  [joseErrors.JOSEAlgNotAllowed.code]: 'wrong_alg',
  [joseErrors.JWTClaimValidationFailed.code]: 'invalid_claims',
};

export function createTokenVerifier({ keys, issuer, clock, leeway, maxTokenAge, cacheSize }: VerifierOptions) {
  const key = (header: JWTHeaderParameters) => {
    const found = typeof header.kid === 'string' ? keys.current.verificationKey(header.kid) : undefined;
    if (!found) throw new UnknownKid();
    return found;
  };
  const verified = new VerifiedTokens(cacheSize, { leeway, maxTokenAge, keyKnown: (kid) => keys.current.verificationKey(kid) !== undefined });

  return async function verifyAccessToken(token: string): Promise<Verification> {
    if (token.length > MAX_TOKEN_LENGTH) return { ok: false, reason: 'too_long' };
    if (!COMPACT_JWS.test(token)) return { ok: false, reason: 'malformed' };
    const now = epochSeconds(clock);
    const digest = verified.digest(token);
    const remembered = digest === undefined ? undefined : verified.claims(digest, now);
    if (remembered) return { ok: true, claims: remembered };
    try {
      const { payload, protectedHeader } = await jwtVerify(token, key, {
        algorithms: [SIGNING_ALG],
        typ: 'at+jwt',
        issuer,
        clockTolerance: leeway,
        maxTokenAge,
        currentDate: new Date(now * 1000),
        requiredClaims: ['sub', 'client_id', 'aud', 'iat', 'exp', 'jti'],
      });
      const { sub, client_id, aud, iat, exp, jti, scope } = payload as Record<string, unknown>;
      if (
        typeof sub !== 'string' ||
        typeof client_id !== 'string' ||
        typeof aud !== 'string' ||
        typeof jti !== 'string' ||
        typeof iat !== 'number' ||
        typeof exp !== 'number' ||
        (scope !== undefined && typeof scope !== 'string')
      ) {
        return { ok: false, reason: 'invalid_claims' };
      }
      // Frozen: a remembered verification hands the same object to every later caller.
      const claims = Object.freeze({ iss: issuer, sub, client_id, aud, iat, exp, jti, ...(scope === undefined ? {} : { scope }) });
      // The key resolver above accepted only a string kid.
      if (digest !== undefined) verified.remember(digest, { claims, kid: protectedHeader.kid!, verifiedAt: now });
      return { ok: true, claims };
    } catch (err) {
      if (err instanceof UnknownKid) return { ok: false, reason: 'unknown_kid' };
      const code = (err as { code?: string }).code;
      return { ok: false, reason: (code && JOSE_REASONS[code]) ?? 'malformed' };
    }
  };
}

export type TokenVerifier = ReturnType<typeof createTokenVerifier>;
