/**
 * The JWK Set (RFC 7517) gateways verify tokens with: public members only, cacheable for
 * JWKS_MAX_AGE seconds, with an ETag so a revalidation costs a 304.
 */
import { createHash } from 'node:crypto';

import type { Middleware } from 'koa';

import type { Keystore } from '../keys/keystore.js';

export function serveJwks(keystore: Keystore, maxAge: number): Middleware {
  const body = JSON.stringify(keystore.publicJwks());
  const etag = createHash('sha256').update(body).digest('base64url');
  return function serveJwks(ctx) {
    ctx.set('Cache-Control', `public, max-age=${maxAge}`);
    ctx.type = 'application/jwk-set+json';
    ctx.etag = etag;
    // koa judges freshness only for a 2xx status, and it is still 404 until a body is set.
    ctx.status = 200;
    if (ctx.fresh) {
      ctx.status = 304;
      return;
    }
    ctx.body = body;
  };
}
