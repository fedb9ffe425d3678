/**
 * The admin API is a resource server of Tessera itself (RFC 6750): a request carries
 * `Authorization: Bearer <access token>` issued by this server for the admin audience
 * (`<ISSUER>/admin`), with `admin:read` for reads and `admin:write` for writes.
 */
import type { Context, Middleware } from 'koa';

import type { Client } from '../clients/client.js';
import type { TokenInspector } from '../introspection/inspect-token.js';
import { repeatedAuthorization } from '../http/headers.js';
import { authenticatedAs } from '../http/request-context.js';

export const ADMIN_READ = 'admin:read';
export const ADMIN_WRITE = 'admin:write';
export const adminAudience = (issuer: string): string => `${issuer}/admin`;

/** The admin client acting, for the audit log. */
export function adminActor(ctx: Context): string {
  const actor = (ctx.state as { adminClientId?: string }).adminClientId;
  if (actor === undefined) throw new Error('admin route reached without authorization');
  return actor;
}

/**
 * A token proves what its client was allowed when it was issued; an admin demoted since then must
 * lose access at once, so the client's current audiences and scopes are checked too.
 */
export function authorizeAdmin(inspect: TokenInspector, issuer: string, findClient: (clientId: string) => Promise<Client | undefined>): Middleware {
  const audience = adminAudience(issuer);
  const realm = `realm="${issuer}"`;

  return async function authorizeAdmin(ctx, next) {
    const scope = ctx.method === 'GET' || ctx.method === 'HEAD' ? ADMIN_READ : ADMIN_WRITE;
    const match = /^Bearer ([A-Za-z0-9\-._~+/]+=*)$/i.exec(ctx.get('authorization'));
    const deny = (status: 400 | 401 | 403, error: string | undefined, description: string) => {
      ctx.status = status;
      // RFC 6750 §3.1: a request without any credentials gets a challenge without an error code.
      ctx.set('WWW-Authenticate', error ? `Bearer ${realm}, error="${error}", error_description="${description}"${status === 403 ? `, scope="${scope}"` : ''}` : `Bearer ${realm}`);
      ctx.body = { error: error ?? 'invalid_token', error_description: description };
    };

    if (repeatedAuthorization(ctx)) return deny(400, 'invalid_request', 'the request must carry at most one Authorization header');
    if (!match) return deny(401, ctx.get('authorization') ? 'invalid_token' : undefined, 'a bearer access token is required');
    const inspection = await inspect(match[1]!);
    if (!inspection.active || inspection.claims.aud !== audience) return deny(401, 'invalid_token', 'the access token is not valid for this API');
    if (!(inspection.claims.scope ?? '').split(' ').includes(scope)) return deny(403, 'insufficient_scope', `this request requires the ${scope} scope`);
    const client = await findClient(inspection.claims.client_id);
    if (!client?.audiences.includes(audience)) return deny(401, 'invalid_token', 'the access token is not valid for this API');
    if (!client.scopes.includes(scope)) return deny(403, 'insufficient_scope', `this request requires the ${scope} scope`);

    (ctx.state as { adminClientId?: string }).adminClientId = inspection.claims.client_id;
    authenticatedAs(ctx, inspection.claims.client_id);
    await next();
  };
}
