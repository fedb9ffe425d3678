/**
 * The JWK Set (RFC 7517) gateways verify tokens with: public members only, cacheable for
 * JWKS_MAX_AGE seconds, with an ETag so a revalidation costs a 304.
 */
import type { Middleware } from 'koa';

import type { Keystore } from '../keys/keystore.js';

export function serveJwks(keys: { readonly current: Keystore }, maxAge: number): Middleware {
  return function serveJwks(ctx) {
    const { jwksBody: body, jwksEtag: etag } = keys.current;
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
