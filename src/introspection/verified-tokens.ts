/**
 * Access tokens whose signature and claims were verified, remembered so that a resource server
 * introspecting the same token again (as most do, on every request they serve) pays no signature
 * check. Keyed by the token's SHA-256 digest, so no bearer token is kept in memory.
 *
 * A remembered token is used only while nothing jose checked can have changed since: the key that
 * signed it is still one we verify with (a revoked key's tokens miss), the clock has not gone back
 * past the verification (iat and nbf only ever pass later), and it is still within exp and the
 * maximum token age, each with the leeway, judged exactly as jose judges them. Otherwise it is
 * verified again in full, so the cache only ever skips a verification that would have succeeded.
 * Revocation and the client's standing are looked up on every call all the same (inspect-token.ts).
 */
import { createHash } from 'node:crypto';

import type { AccessTokenClaims } from './verify-token.js';

interface Entry {
  readonly claims: AccessTokenClaims;
  readonly kid: string;
  /** Epoch seconds of the verification. */
  readonly verifiedAt: number;
}

export interface VerifiedTokenRules {
  /** Seconds of clock skew tolerated on exp and iat. */
  readonly leeway: number;
  readonly maxTokenAge: number;
  /** Whether tokens signed under this kid may still be verified. */
  readonly keyKnown: (kid: string) => boolean;
}

export class VerifiedTokens {
  readonly #entries = new Map<string, Entry>();

  constructor(
    private readonly maxEntries: number,
    private readonly rules: VerifiedTokenRules,
  ) {}

  /** The digest a token is remembered by; undefined when the cache is off. */
  digest(token: string): string | undefined {
    return this.maxEntries > 0 ? createHash('sha256').update(token).digest('base64url') : undefined;
  }

  /** The claims of a token verified before, if a full verification now would accept it too. */
  claims(digest: string, now: number): AccessTokenClaims | undefined {
    const entry = this.#entries.get(digest);
    if (!entry) return undefined;
    this.#entries.delete(digest);
    const { leeway, maxTokenAge, keyKnown } = this.rules;
    const { exp, iat } = entry.claims;
    // jose's rules: expired when exp <= now - leeway; too old when now - iat - leeway > maxTokenAge.
    if (now < entry.verifiedAt || exp <= now - leeway || now - iat - leeway > maxTokenAge || !keyKnown(entry.kid)) return undefined;
    // Re-inserting marks it most recently used.
    this.#entries.set(digest, entry);
    return entry.claims;
  }

  remember(digest: string, entry: Entry): void {
    this.#entries.delete(digest);
    this.#entries.set(digest, entry);
    while (this.#entries.size > this.maxEntries) this.#entries.delete(this.#entries.keys().next().value as string);
  }
}
