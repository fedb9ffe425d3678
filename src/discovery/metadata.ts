/**
 * Authorization server metadata (RFC 8414), served at /.well-known/oauth-authorization-server and,
 * for libraries that only know OpenID Connect discovery, at /.well-known/openid-configuration.
 * It names only what Tessera serves: no authorization endpoint, so no response types.
 */
import type { Middleware } from 'koa';

import { AUTH_METHODS, GRANT_TYPES } from '../clients/client.js';

export const TOKEN_PATH = '/oauth/token';
export const INTROSPECTION_PATH = '/oauth/introspect';
export const REVOCATION_PATH = '/oauth/revoke';
export const JWKS_PATH = '/.well-known/jwks.json';
export const DISCOVERY_PATHS = ['/.well-known/oauth-authorization-server', '/.well-known/openid-configuration'] as const;

export function authorizationServerMetadata(issuer: string): Record<string, unknown> {
  return {
    issuer,
    token_endpoint: `${issuer}${TOKEN_PATH}`,
    jwks_uri: `${issuer}${JWKS_PATH}`,
    grant_types_supported: [...GRANT_TYPES],
    token_endpoint_auth_methods_supported: [...AUTH_METHODS],
    // RFC 8414 §2 requires this member and §3.2 says an empty one must be omitted; with no
    // authorization endpoint the two cannot both hold. Kept, empty: the JavaScript client libraries tried accept it.
    response_types_supported: [],
    introspection_endpoint: `${issuer}${INTROSPECTION_PATH}`,
    introspection_endpoint_auth_methods_supported: [...AUTH_METHODS],
    revocation_endpoint: `${issuer}${REVOCATION_PATH}`,
    revocation_endpoint_auth_methods_supported: [...AUTH_METHODS],
  };
}

export function serveMetadata(issuer: string): Middleware {
  const body = JSON.stringify(authorizationServerMetadata(issuer));
  return function serveMetadata(ctx) {
    ctx.set('Cache-Control', 'public, max-age=3600');
    ctx.type = 'application/json';
    ctx.body = body;
  };
}
