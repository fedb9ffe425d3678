/**
 * oidc-provider's storage adapter, for the Client model only: JWT access tokens are never stored,
 * and every other model oidc-provider knows (sessions, grants, opaque tokens) belongs to routes
 * Tessera does not serve, so reaching one is a bug and fails loudly.
 *
 * The minter (mint-token.ts) needs the engine's Client for the token's client_id and nothing else:
 * every id gets the same stand-in metadata, without touching the database. Only clients that
 * authenticate-client.ts has verified ever get here.
 */
import { randomBytes } from 'node:crypto';

import type { Adapter, AdapterPayload } from 'oidc-provider';

// oidc-provider insists that secret-based clients carry a client_secret. It never compares one
// (Tessera authenticates clients itself), so each process uses a random, unusable value.
const UNUSED_SECRET = randomBytes(32).toString('base64url');

function providerClientMetadata(clientId: string): AdapterPayload {
  return {
    client_id: clientId,
    client_secret: UNUSED_SECRET,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
  };
}

export function createAdapterFactory(): (name: string) => Adapter {
  const unsupported = (name: string) => (): never => {
    throw new Error(`oidc-provider tried to use storage for model ${name}, which Tessera does not serve`);
  };
  return (name: string): Adapter => {
    const fail = unsupported(name);
    return {
      find: name === 'Client' ? (id: string) => Promise.resolve(providerClientMetadata(id)) : fail,
      upsert: fail,
      findByUserCode: fail,
      findByUid: fail,
      consume: fail,
      destroy: fail,
      revokeByGrantId: fail,
    };
  };
}
