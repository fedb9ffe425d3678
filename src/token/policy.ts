/**
 * Step 3 of a token request: what may this authenticated client get? Pure: from the client, the
 * request and the server's limits to a decision or an RFC 6749 §5.2 / RFC 8707 error.
 */
import type { Client } from '../clients/client.js';
import type { TokenRequest } from './parse-request.js';

export interface PolicyLimits {
  /** ACCESS_TOKEN_TTL: used when the client has no lifetime of its own. */
  readonly defaultTtl: number;
  /** ACCESS_TOKEN_MAX_TTL: caps every lifetime, including one stored before the cap was lowered. */
  readonly maxTtl: number;
}

export interface Grant {
  readonly audience: string;
  /** Granted scopes; empty when the client has no default and asked for none. */
  readonly scopes: readonly string[];
  /** Access-token lifetime in seconds. */
  readonly ttl: number;
}

export type PolicyError = 'unauthorized_client' | 'invalid_scope' | 'invalid_target';

export type Decision =
  | { readonly ok: true; readonly grant: Grant }
  | { readonly ok: false; readonly error: PolicyError; readonly description: string; readonly reason: string };

const deny = (error: PolicyError, description: string, reason: string): Decision => ({ ok: false, error, description, reason });

export function decide(client: Client, request: TokenRequest, limits: PolicyLimits): Decision {
  if (!client.grantTypes.includes('client_credentials')) {
    return deny('unauthorized_client', 'the client is not allowed to use this grant type', 'grant_type_not_allowed');
  }

  const target = request.audience ?? client.defaultAudience;
  if (target === null) {
    return deny('invalid_target', 'no audience requested and the client has no default audience', 'audience_missing');
  }
  if (!client.audiences.includes(target)) {
    return deny('invalid_target', 'the requested audience is not allowed for this client', 'audience_not_allowed');
  }

  // RFC 6749 §5.2: a scope the client may not have fails the request; it is never silently dropped.
  const requested = request.scopes ?? client.defaultScopes;
  const refused = requested.filter((s) => !client.scopes.includes(s));
  if (refused.length > 0) {
    return deny('invalid_scope', 'the requested scope is not allowed for this client', 'scope_not_allowed');
  }

  const ttl = Math.min(client.accessTokenTtl ?? limits.defaultTtl, limits.maxTtl);
  return { ok: true, grant: { audience: target, scopes: requested, ttl } };
}
