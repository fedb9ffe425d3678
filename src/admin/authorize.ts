/**
 * The admin API is a resource server of Tessera itself (RFC 6750): a request carries
 * `Authorization: Bearer <access token>` issued by this server for the admin audience
 * (`<ISSUER>/admin`), with `admin:read` for reads and `admin:write` for writes.
 */
import type { Context, Middleware } from 'koa';

import { auditEvent, scrub, type AuditLog } from '../audit/audit-log.js';
import type { Client } from '../clients/client.js';
import type { TokenInspector } from '../introspection/inspect-token.js';
import { repeatedAuthorization } from '../http/headers.js';
import { authenticatedAs, requestSource } from '../http/request-context.js';
import type { Refusals } from '../limits/refusals.js';

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
export interface AdminAuthorizationDeps {
  readonly inspect: TokenInspector;
  readonly issuer: string;
  readonly findClient: (clientId: string) => Promise<Client | undefined>;
  readonly auditLog: AuditLog;
  /** Denials are audited like refused requests: a row for the first per client (else address) and reason in each period, the rest counted. */
  readonly refusals: Refusals;
}

export function authorizeAdmin({ inspect, issuer, findClient, auditLog, refusals }: AdminAuthorizationDeps): Middleware {
  const audience = adminAudience(issuer);
  const realm = `realm="${issuer}"`;

  return async function authorizeAdmin(ctx, next) {
    const scope = ctx.method === 'GET' || ctx.method === 'HEAD' ? ADMIN_READ : ADMIN_WRITE;
    const match = /^Bearer ([A-Za-z0-9\-._~+/]+=*)$/i.exec(ctx.get('authorization'));
    /**
     * `clientId`: the token's client, once the token is known to be Tessera's own and active. Denials
     * are counted per client when it is known, else per address, so one admin client's denials do
     * not hide another's. The row is committed before the answer is set: if it cannot be, the
     * caller gets the last-resort 500, without a challenge.
     */
    const deny = async (status: 400 | 401 | 403, error: string | undefined, reason: string, description: string, clientId: string | null = null) => {
      const key = clientId === null ? { kind: 'address' as const, value: ctx.ip } : { kind: 'client_id' as const, value: clientId };
      if (refusals.admit({ ...key, reason: `admin.denied:${reason}` })) {
        const event = auditEvent({ type: 'admin.denied', outcome: 'failure', client_id: clientId, ...requestSource(ctx), error: error ?? 'invalid_token', reason, details: { method: ctx.method, route: scrub(ctx.path) } });
        await auditLog.record(event);
      }
      ctx.status = status;
      // RFC 6750 §3.1: a request without any credentials gets a challenge without an error code.
      ctx.set('WWW-Authenticate', error ? `Bearer ${realm}, error="${error}", error_description="${description}"${status === 403 ? `, scope="${scope}"` : ''}` : `Bearer ${realm}`);
      ctx.body = { error: error ?? 'invalid_token', error_description: description };
    };

    if (repeatedAuthorization(ctx)) return deny(400, 'invalid_request', 'repeated_authorization', 'the request must carry at most one Authorization header');
    if (!match) return deny(401, ctx.get('authorization') ? 'invalid_token' : undefined, ctx.get('authorization') ? 'malformed_token' : 'token_missing', 'a bearer access token is required');
    const inspection = await inspect(match[1]!);
    if (!inspection.active) return deny(401, 'invalid_token', inspection.reason, 'the access token is not valid for this API');
    if (inspection.claims.aud !== audience) return deny(401, 'invalid_token', 'wrong_audience', 'the access token is not valid for this API', inspection.claims.client_id);
    const tokenClient = inspection.claims.client_id;
    if (!(inspection.claims.scope ?? '').split(' ').includes(scope)) return deny(403, 'insufficient_scope', 'insufficient_scope', `this request requires the ${scope} scope`, tokenClient);
    const client = await findClient(tokenClient);
    if (!client?.audiences.includes(audience)) return deny(401, 'invalid_token', 'not_admin', 'the access token is not valid for this API', tokenClient);
    if (!client.scopes.includes(scope)) return deny(403, 'insufficient_scope', 'insufficient_scope', `this request requires the ${scope} scope`, tokenClient);

    (ctx.state as { adminClientId?: string }).adminClientId = inspection.claims.client_id;
    authenticatedAs(ctx, inspection.claims.client_id);
    await next();
  };
}
