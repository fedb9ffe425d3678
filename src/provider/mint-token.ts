/**
 * Step 4 of a token request: oidc-provider mints the access token. Its ClientCredentials model and
 * JWT format build the RFC 9068 claims (iss, sub, client_id, aud, scope, jti, iat, exp) and sign
 * them as an RS256 `at+jwt` with the active key from keys/.
 *
 * Only the model is used: none of oidc-provider's routes is mounted, so none can be reached.
 * token/index.ts serves the HTTP side of the request itself, as introspection/ does for its two
 * endpoints. Running the engine's whole pipeline around each token cost more than Tessera's own
 * steps did (BENCHMARKS.md, "ninth session").
 *
 * The one `new Provider()` is here. Every feature but client_credentials is off: its development
 * defaults (dev keystore, in-memory storage, interactions) are never inherited.
 */
import { randomBytes } from 'node:crypto';

import { Provider, type ResourceServerInstance } from 'oidc-provider';

import { SIGNING_ALG, type Keystore } from '../keys/keystore.js';
import type { Grant } from '../token/policy.js';
import { createAdapterFactory } from './adapter.js';

export interface TokenMinter {
  /** The key this minter signs with: a minter is built for each active key. */
  readonly kid: string;
  /** The signed access token and its jti; `issuedAt` in epoch seconds, from Tessera's clock. */
  mint(clientId: string, grant: Grant, issuedAt: number): Promise<{ accessToken: string; jti: string }>;
}

export interface MinterOptions {
  readonly issuer: string;
  readonly keystore: Keystore;
  /** How many clients' engine instances to keep (the verified-credential cache's size). */
  readonly clientInstances: number;
}

const off = { enabled: false } as const;

export function createTokenMinter({ issuer, keystore, clientInstances }: MinterOptions): TokenMinter {
  const provider = new Provider(issuer, {
    adapter: createAdapterFactory(),
    // Only the active key: the minter is rebuilt when the active key changes.
    jwks: keystore.signingJwks(),
    clientDefaults: {
      grant_types: ['client_credentials'],
      response_types: [],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: SIGNING_ALG,
    },
    responseTypes: ['none'],
    scopes: [],
    // Cookies belong to routes Tessera does not serve; a random key keeps the engine from warning.
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    features: {
      // The grant the stand-in clients (adapter.ts) are registered for; its route is never mounted.
      clientCredentials: { enabled: true },
      // On by default in oidc-provider v9.
      dPoP: off,
      devInteractions: off,
      introspection: off,
      revocation: off,
      registration: off,
      userinfo: off,
      rpInitiatedLogout: off,
      deviceFlow: off,
      pushedAuthorizationRequests: off,
    },
  });
  const kid = keystore.active.kid;
  const engineClient = keptClientInstances(provider, clientInstances);

  return {
    kid,
    async mint(clientId, grant, issuedAt) {
      const scope = grant.scopes.join(' ') || undefined;
      // iat and exp from Tessera's clock, which introspection and revocation judge them by.
      const token = new provider.ClientCredentials({ client: await engineClient(clientId), scope, iat: issuedAt, exp: issuedAt + grant.ttl });
      const resourceServer: ResourceServerInstance = {
        audience: grant.audience,
        scope: scope ?? '',
        scopes: new Set(grant.scopes),
        identifier: () => grant.audience,
        accessTokenTTL: grant.ttl,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: SIGNING_ALG, kid } },
      };
      token.resourceServer = resourceServer;
      const accessToken = await token.save();
      return { accessToken, jti: token.jti };
    },
  };
}

/**
 * The engine's Client for an id: it builds one (validating its metadata) for each id it meets and
 * keeps only 100 to 200, so with more clients than that in use it would rebuild one on most token
 * requests. Every id's metadata is the same stand-in (adapter.ts), so an instance never goes stale;
 * only authenticated clients get here, and as many are kept as the verified-credential cache
 * holds, the least recently used dropped first.
 */
function keptClientInstances(provider: Provider, max: number) {
  type Instance = NonNullable<Awaited<ReturnType<typeof provider.Client.find>>>;
  const kept = new Map<string, Instance>();
  return async (clientId: string): Promise<Instance> => {
    const hit = kept.get(clientId);
    if (hit) {
      kept.delete(clientId);
      kept.set(clientId, hit);
      return hit;
    }
    const client = await provider.Client.find(clientId);
    if (!client) throw new Error('the engine has no client instance for an authenticated client');
    if (max > 0) {
      kept.set(clientId, client);
      if (kept.size > max) kept.delete(kept.keys().next().value as string);
    }
    return client;
  };
}
