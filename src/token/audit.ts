/**
 * Step 5 of a token request: one audit row for every answer, committed before the answer leaves.
 * If the row cannot be committed, an issued token is withheld and the caller gets server_error.
 */
import type { Context, Middleware } from 'koa';

import { scrub, type AuditEvent, type AuditLog } from '../audit/audit-log.js';
import { requestIdOf, requestSource } from '../http/request-context.js';
import type { Refusals } from '../limits/refusals.js';
import type { Logger } from '../log.js';
import { SERVER_ERROR } from '../http/oauth-error.js';
import { tokenState } from './request-state.js';

interface TokenResponseBody {
  scope?: string;
  error?: string;
}

export function tokenAuditEvent(ctx: Context): AuditEvent {
  const state = tokenState(ctx);
  const form = state.form;
  const body = (ctx.body ?? {}) as TokenResponseBody;
  const issued = ctx.status === 200 ? state.issued : undefined;

  return {
    type: issued ? 'token.issued' : 'token.failed',
    outcome: issued ? 'success' : 'failure',
    // As presented, from the Basic header or the form: proven only when the outcome is a success.
    client_id: scrub(state.presentedClientId),
    ...requestSource(ctx),
    requested_scope: scrub(form?.get('scope'), 1024),
    granted_scope: issued ? scrub(body.scope, 1024) : null,
    audience: scrub(state.grant?.audience ?? form?.get('resource') ?? form?.get('audience'), 512),
    jti: issued?.jti ?? null,
    token_expires_at: issued?.expiresAt ?? null,
    error: issued ? null : (scrub(body.error, 64) ?? 'server_error'),
    reason: issued ? null : scrub(state.failure?.reason),
  };
}

export function auditTokenRequest(auditLog: AuditLog, refusals: Refusals, log: Logger): Middleware {
  return async function auditTokenRequest(ctx, next) {
    await next();
    const refusal = tokenState(ctx).failure?.refusal;
    if (refusal && !refusals.admit(refusal)) return;
    try {
      await auditLog.record(tokenAuditEvent(ctx));
    } catch (err) {
      log.error({ err, request_id: requestIdOf(ctx) }, 'audit row not committed; token withheld');
      ctx.status = 500;
      ctx.body = { ...SERVER_ERROR };
    }
  };
}
