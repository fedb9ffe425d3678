/**
 * oidc-provider's storage adapter, for the Client model only: every other model oidc-provider
 * knows (sessions, grants, opaque tokens) belongs to routes Tessera does not serve, and JWT access
 * tokens are never stored, so reaching any other model is a bug and fails loudly.
 *
 * Every client_id gets the same stand-in metadata, without touching the database: the engine only
 * needs a secret-based client to call Client#compareClientSecret on, and authenticate-client.ts is
 * the one place that looks the client up, checks its secret, its state and its own auth method.
 * (The engine accepts Basic or post for either secret method, so the method given here decides
 * nothing.) An id that names no client is therefore handled exactly like one that does, and is
 * refused after the same argon2 work.
 */
import { randomBytes } from 'node:crypto';

import type { Adapter, AdapterPayload } from 'oidc-provider';

// The engine only accepts client_ids of printable ASCII (RFC 6749 VSCHAR). Any other presented id
// cannot name a Tessera client, so its decoy carries this stand-in, which no client can have ('!'
// is outside Tessera's client_id alphabet), and is refused like every unknown client.
const UNREPRESENTABLE_ID = '!unrepresentable-client-id';
const VSCHAR = /^[\x20-\x7E]{1,1024}$/;

// oidc-provider insists that secret-based clients carry a client_secret. Tessera never lets it
// compare one (compareClientSecret is replaced), so each process uses a random, unusable value.
const UNUSED_SECRET = randomBytes(32).toString('base64url');

export function providerClientMetadata(clientId: string): AdapterPayload {
  return {
    client_id: VSCHAR.test(clientId) ? clientId : UNREPRESENTABLE_ID,
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
