/**
 * Step 2 of a token request: is this the client it claims to be? (RFC 6749 §2.3.1)
 *
 * Every failed attempt costs exactly one argon2id verify: against the stored hash the presented
 * secret names, or against a decoy when the client, the secret id or the secret's format is
 * unknown. A secret verified recently skips argon2 (verified-credentials.ts), and the client and
 * secret rows come from the client-record cache (client-records.ts), so a request for a known
 * client usually costs neither argon2 nor a query. The caller sees one generic `invalid_client`
 * whatever went wrong; the reason goes to the audit log.
 */
import type { AuthMethod, Client } from '../clients/client.js';
import type { ClientSecretRow } from '../clients/client.table.js';
import type { ClientRecords } from '../clients/client-records.js';
import { isPossibleClientId } from '../clients/client-settings.js';
import { updateSecretHash } from '../clients/client.repository.js';
import type { LastUse } from '../clients/last-use.js';
import { secretIdOf, type SecretHasher } from '../clients/secret.js';
import { Overloaded } from '../clients/work-pool.js';
import type { VerifiedCredentialCache } from '../clients/verified-credentials.js';
import { epochSeconds, type Clock } from '../clock.js';
import type { Db } from '../db/database.js';
import { OAuthError } from '../http/oauth-error.js';
import { Throttled, type Limits } from '../limits/index.js';

const LAST_USED_PRECISION = 60;

export type AuthFailure =
  | 'unknown_client'
  | 'secret_mismatch'
  | 'secret_expired'
  | 'client_disabled'
  | 'auth_method_not_allowed';

export type AuthOutcome = { readonly ok: true; readonly client: Client } | { readonly ok: false; readonly reason: AuthFailure };

export interface PresentedCredentials {
  readonly clientId: string;
  readonly secret: string;
  /** How the secret arrived: Authorization header or form body. */
  readonly method: AuthMethod;
  /** The caller's address, for the failed-authentication limit. */
  readonly remoteAddr: string;
}

export interface AuthenticatorDeps {
  readonly db: Db;
  readonly records: ClientRecords;
  readonly limits: Limits;
  readonly hasher: SecretHasher;
  readonly verified: VerifiedCredentialCache;
  readonly lastUse: LastUse;
  readonly clock: Clock;
}

export interface Authenticator {
  (presented: PresentedCredentials): Promise<AuthOutcome>;
  /**
   * Judges a client that authenticated earlier in this request again, on its client and secret
   * rows as they are now (from the cache when nothing changed): for a request that has awaited
   * something since, because a change answered meanwhile (a secret revoked, the client disabled or
   * narrowed) applies to it too. The secret is not verified again.
   */
  readonly reconfirm: (clientId: string, secret: string, method: AuthMethod) => Promise<AuthOutcome>;
}

const keepOnOverload =
  (hash: string) =>
  (err: unknown): string => {
    if (err instanceof Overloaded) return hash;
    throw err;
  };

export function createAuthenticator({ db, records, limits, hasher, verified, lastUse, clock }: AuthenticatorDeps): Authenticator {
  /** A guess that failed: it counts towards both back-offs. */
  const guessFailed = (clientId: string, remoteAddr: string, reason: AuthFailure): AuthOutcome => {
    limits.authFailed(clientId, remoteAddr);
    return { ok: false, reason };
  };

  /** The client's standing now: the rows read again, from the cache when nothing changed. */
  const judgeCurrent = async (clientId: string, secretId: string, method: AuthMethod): Promise<AuthOutcome> => {
    const client = await records.client(clientId);
    const stored = client ? await records.secret(clientId, secretId) : undefined;
    if (!client) return { ok: false, reason: 'unknown_client' };
    if (!stored) return { ok: false, reason: 'secret_mismatch' };
    return judge(client, stored, method);
  };

  // Only a caller who proved knowledge of the secret gets here, so these reasons reveal nothing.
  const judge = (client: Client, stored: ClientSecretRow, method: AuthMethod): AuthOutcome => {
    if (stored.expires_at !== null && Number(stored.expires_at) <= epochSeconds(clock)) return { ok: false, reason: 'secret_expired' };
    if (!client.enabled) return { ok: false, reason: 'client_disabled' };
    if (client.authMethod !== method) return { ok: false, reason: 'auth_method_not_allowed' };
    return { ok: true, client };
  };

  async function authenticateClient({ clientId, secret, method, remoteAddr }: PresentedCredentials): Promise<AuthOutcome> {
    const addressWait = limits.addressWait(remoteAddr);
    if (addressWait > 0) throw new Throttled(addressWait, { kind: 'address', value: limits.addressUnit(remoteAddr), reason: 'auth_backoff' });

    // An id no client can have (the alphabet is public) makes no query; it pays the same decoy.
    const client = isPossibleClientId(clientId) ? await records.client(clientId) : undefined;
    const secretId = secretIdOf(secret);
    const stored = client && secretId !== undefined ? await records.secret(clientId, secretId) : undefined;
    const proven = stored !== undefined && verified.has(stored.id, stored.hash, secret);
    // A caller holding a recently verified secret is let through: it has nothing left to guess.
    const clientWait = proven ? 0 : limits.clientWait(clientId, remoteAddr);
    if (clientWait > 0) throw new Throttled(clientWait, { kind: 'client_id', value: clientId, reason: 'auth_backoff' });

    if (!client || !stored) {
      await hasher.verifyDecoy(secret);
      return guessFailed(clientId, remoteAddr, client ? 'secret_mismatch' : 'unknown_client');
    }
    let outcome = judge(client, stored, method);
    if (!proven) {
      if (!(await hasher.verify(stored.hash, secret))) return guessFailed(clientId, remoteAddr, 'secret_mismatch');
      // Hashes carry their parameters: one made with weaker ones is upgraded now that we know the
      // secret. Best effort: with the argon2 queue full, the proven caller is not refused for it.
      const hash = hasher.needsRehash(stored.hash) ? await hasher.hash(secret).catch(keepOnOverload(stored.hash)) : stored.hash;
      if (hash !== stored.hash) {
        await updateSecretHash(db, stored.id, hash);
        records.invalidate(clientId);
      }
      verified.remember(stored.id, hash, secret);
      // argon2 may have waited in its queue for a second: a change committed meanwhile (a secret
      // revoked, the client disabled or deleted) has already been answered as done, so it applies
      // to this request too.
      outcome = await judgeCurrent(clientId, stored.id, method);
    }
    if (!outcome.ok) return outcome;

    // Operators see when a secret was last used (to retire unused ones); a minute's precision
    // keeps this off most requests, and the write happens later, in a batch (last-use.ts).
    const now = epochSeconds(clock);
    if (stored.last_used_at === null || now - Number(stored.last_used_at) >= LAST_USED_PRECISION) {
      lastUse.record(clientId, stored.id, now);
    }
    // A success leaves the client_id's failures alone: clearing them would tell a guesser, by the
    // back-off's next answer, that the id's workload had authenticated in between (so it exists).
    return outcome;
  }

  return Object.assign(authenticateClient, {
    reconfirm: (clientId: string, secret: string, method: AuthMethod) => {
      const secretId = secretIdOf(secret);
      return secretId === undefined ? Promise.resolve<AuthOutcome>({ ok: false, reason: 'secret_mismatch' }) : judgeCurrent(clientId, secretId, method);
    },
  });
}

/**
 * The authenticated client, or the OAuthError its endpoint answers: 401 invalid_client for every
 * failure alike, 429 for a back-off, 503 for a full argon2 queue. `addressUnit` is the caller's
 * address as the limits count it, which refusals are aggregated by.
 */
export async function authenticateOrThrow(authenticate: Authenticator, credentials: PresentedCredentials, addressUnit: string): Promise<Client> {
  const outcome = await authenticate(credentials).catch((err: unknown) => {
    if (err instanceof Overloaded) throw OAuthError.overloaded(addressUnit);
    if (err instanceof Throttled) throw OAuthError.throttled(err);
    throw err;
  });
  if (!outcome.ok) throw OAuthError.invalidClient(outcome.reason);
  return outcome.client;
}
