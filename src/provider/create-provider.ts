/**
 * The only `new Provider()`. Every feature Tessera relies on is set explicitly and every other
 * one is off; oidc-provider's development defaults (dev keystore, in-memory storage, interactions)
 * are never inherited.
 */
import { randomBytes } from 'node:crypto';

import { Provider, type Configuration } from 'oidc-provider';

import type { Keystore } from '../keys/keystore.js';
import type { TokenHooks } from '../token/index.js';
import { TOKEN_PATH } from '../discovery/metadata.js';
import { createAdapterFactory } from './adapter.js';

export interface ProviderOptions {
  readonly issuer: string;
  readonly keystore: Keystore;
  readonly hooks: TokenHooks;
  readonly trustProxy: boolean;
  /** How many clients' engine instances to keep (the verified-credential cache's size). */
  readonly clientInstances: number;
}

const off = { enabled: false } as const;

export function createProvider({ issuer, keystore, hooks, trustProxy, clientInstances }: ProviderOptions): Provider {
  const configuration: Configuration = {
    adapter: createAdapterFactory(),
    // Only the active key: the engine signs, and is rebuilt when the active key changes.
    jwks: keystore.signingJwks(),
    clientAuthMethods: ['client_secret_basic', 'client_secret_post'],
    clientDefaults: {
      grant_types: ['client_credentials'],
      response_types: [],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: 'RS256',
    },
    responseTypes: ['none'],
    scopes: [],
    // Cookies belong to routes Tessera does not serve; a random key keeps the engine from warning.
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    routes: { token: TOKEN_PATH },
    // CORS is decided outside the engine (http/headers.ts strips its headers), so never refuse here.
    clientBasedCORS: () => true,
    ttl: { ClientCredentials: hooks.accessTokenTtl },
    features: {
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: hooks.defaultResource,
        getResourceServerInfo: hooks.getResourceServerInfo,
        useGrantedResource: () => true,
      },
      // On by default in oidc-provider v9; Tessera issues Bearer tokens only.
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
    // Answers are JSON whatever the Accept header says.
    renderError(ctx, out) {
      ctx.type = 'application/json';
      ctx.body = out;
    },
  };

  const provider = new Provider(issuer, configuration);
  provider.proxy = trustProxy;
  provider.Client.prototype.compareClientSecret = keepClientInstances(provider, hooks.compareClientSecret, clientInstances);
  provider.on('grant.error', hooks.onGrantError);
  provider.on('server_error', hooks.onServerError);
  return provider;
}

/**
 * The engine builds a Client instance (validating its metadata) for each id it meets and keeps
 * 100 to 200 of them, so with more clients than that in use it rebuilds one on most token
 * requests: the largest cost of serving many clients. Every id's metadata is fixed for the life of
 * the process (adapter.ts; the client's real state is judged by authenticate-client.ts), so an
 * instance never goes stale and more of them can be kept: those of clients that authenticated,
 * as many as the verified-credential cache holds, the least recently used dropped first. The
 * engine looks a client up before it authenticates it, so keeping every id it meets would let
 * anyone fill this with made-up ones. Returns `compare`, wrapped to keep the instances it accepts.
 */
function keepClientInstances(provider: Provider, compare: TokenHooks['compareClientSecret'], max: number): TokenHooks['compareClientSecret'] {
  const build = provider.Client.find.bind(provider.Client);
  type Instance = NonNullable<Awaited<ReturnType<typeof build>>>;
  const kept = new Map<string, Instance>();
  provider.Client.find = (id: string) => {
    const hit = kept.get(id);
    if (!hit) return build(id);
    kept.delete(id);
    kept.set(id, hit);
    return Promise.resolve(hit);
  };
  return async function compareClientSecret(this: { clientId: string }, presented: string) {
    const accepted = await compare.call(this, presented);
    if (accepted && max > 0 && !kept.has(this.clientId)) {
      // Installed on the engine's Client prototype: `this` is one of its instances.
      kept.set(this.clientId, this as Instance);
      if (kept.size > max) kept.delete(kept.keys().next().value as string);
    }
    return accepted;
  };
}
