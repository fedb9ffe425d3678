/**
 * Step 5 of a token request: one audit row for every answer, committed before the answer leaves.
 * If the row cannot be committed, an issued token is withheld and the caller gets server_error.
 */
import { decodeJwt } from 'jose';
import type { Context, Middleware } from 'koa';
import type { KoaContextWithOIDC } from 'oidc-provider';

import type { AuditEvent, AuditLog } from '../audit/audit-log.js';
import { requestIdOf } from '../http/request-context.js';
import type { Logger } from '../log.js';
import { tokenState } from './request-state.js';

const clip = (value: unknown, max = 256): string | null => (typeof value === 'string' && value !== '' ? value.slice(0, max) : null);

interface TokenResponseBody {
  access_token?: string;
  scope?: string;
  error?: string;
}

export function tokenAuditEvent(ctx: Context): AuditEvent {
  const oidc = (ctx as Partial<KoaContextWithOIDC>).oidc;
  const params = oidc?.params;
  const body = (ctx.body ?? {}) as TokenResponseBody;
  const state = tokenState(ctx);
  const issued = ctx.status === 200 && typeof body.access_token === 'string' ? decodeJwt(body.access_token) : undefined;
  const requestedAudience = (oidc?.body as { audience?: unknown } | undefined)?.audience ?? params?.resource;

  return {
    type: issued ? 'token.issued' : 'token.failed',
    outcome: issued ? 'success' : 'failure',
    client_id: clip(oidc?.client?.clientId ?? params?.client_id),
    remote_addr: clip(ctx.ip, 64),
    user_agent: clip(ctx.get('user-agent')),
    request_id: requestIdOf(ctx),
    requested_scope: clip(params?.scope, 1024),
    granted_scope: issued ? clip(body.scope, 1024) : null,
    audience: clip(state.grant?.audience ?? requestedAudience, 512),
    jti: typeof issued?.jti === 'string' ? issued.jti : null,
    token_expires_at: typeof issued?.exp === 'number' ? issued.exp : null,
    error: issued ? null : clip(body.error, 64) ?? 'server_error',
    reason: issued ? null : clip(state.failure),
  };
}

export function auditTokenRequest(auditLog: AuditLog, log: Logger): Middleware {
  return async function auditTokenRequest(ctx, next) {
    await next();
    try {
      await auditLog.record(tokenAuditEvent(ctx));
    } catch (err) {
      log.error({ err, request_id: requestIdOf(ctx) }, 'audit row not committed; token withheld');
      ctx.status = 500;
      ctx.body = { error: 'server_error', error_description: 'the request could not be completed' };
    }
  };
}
