/**
 * POST /oauth/introspect (RFC 7662) and POST /oauth/revoke (RFC 7009), served by Tessera itself:
 * oidc-provider refuses to introspect or revoke JWT access tokens. Each call goes:
 *   1. http/read-form.ts          strict form body
 *   2. http/client-credentials.ts the caller is a client, verified as at the token endpoint
 *   3. inspect-token.ts           verify-token.ts (jose, our keys) + revocation and client standing
 *   4. the answer                 introspect: active claims or {"active": false}; revoke: 200, empty
 *   5. audit                      one row per call, committed before the answer leaves
 *   6. metrics                    the call counted once by result (ops/metrics.ts)
 */
import type { Context, Middleware } from 'koa';

import { auditEvent, scrub, type AuditEvent, type AuditLog } from '../audit/audit-log.js';
import { epochSeconds, type Clock } from '../clock.js';
import type { Client } from '../clients/client.js';
import type { Db } from '../db/database.js';
import { repeatedAuthorization } from '../http/headers.js';
import { basicClientId, readClientCredentials } from '../http/client-credentials.js';
import { OAuthError, writeOAuthError } from '../http/oauth-error.js';
import { readForm, type Form } from '../http/read-form.js';
import { authenticatedAs, requestSource } from '../http/request-context.js';
import type { Limits } from '../limits/index.js';
import type { CallOutcome, IntrospectionResult, Metrics, RevocationResult } from '../ops/metrics.js';
import { authenticateOrThrow, type Authenticator } from '../token/authenticate-client.js';
import type { TokenInspector } from './inspect-token.js';
import { insertRevokedToken } from './revocation.repository.js';

export interface IntrospectionDeps {
  readonly db: Db;
  readonly authenticate: Authenticator;
  readonly limits: Limits;
  readonly inspect: TokenInspector;
  readonly auditLog: AuditLog;
  readonly clock: Clock;
  readonly issuer: string;
  readonly metrics: Pick<Metrics, 'introspection' | 'revocation'>;
}

/** What a handled call reports: the answer's body, the event-specific audit fields, and its result for metrics. */
interface Handled<R extends string> {
  readonly body: unknown;
  readonly audit: Pick<AuditEvent, 'jti' | 'audience' | 'reason' | 'token_expires_at'> & { details: Record<string, unknown> };
  readonly result: R;
}

/**
 * `caller` judges the authenticated caller again, as it is now: a handler decides with it after
 * its own awaits, so a change answered meanwhile (the caller disabled or narrowed) applies.
 */
type Handler<R extends string> = (caller: () => Promise<Client>, form: Form) => Promise<Handled<R>>;

/** RFC 7662 §4: a resource server learns only about tokens for the audiences it serves. */
function mayInspect(caller: Client, audience: string): boolean {
  return caller.introspectionAudiences.includes('*') || caller.introspectionAudiences.includes(audience);
}

/** RFC 7662 §2.1, RFC 7009 §2.1; token_type_hint is read and ignored: Tessera issues one kind. */
const CALLER_PARAMETERS: ReadonlySet<string> = new Set(['token', 'token_type_hint', 'client_id', 'client_secret']);

function requiredToken(form: Form): string {
  const token = form.get('token');
  if (token === undefined || token === '') throw OAuthError.invalidRequest('the token parameter is required', 'token_missing');
  return token;
}

/**
 * Form, caller authentication, one audit row per call, and RFC 6749 §5.2 errors around a handler.
 * Each call is counted once, when its answer is final: a failure that escapes (the audit row not
 * committed, an internal error) counts as server_error.
 */
function callerEndpoint<R extends string>(
  type: string,
  deps: IntrospectionDeps,
  handle: Handler<R>,
  count: (outcome: CallOutcome<R | 'error' | 'refused'>) => void,
): Middleware {
  return async function callerEndpoint(ctx: Context) {
    let outcome: CallOutcome<R | 'error' | 'refused'> = { result: 'error', error: 'server_error' };
    try {
      outcome = await answer(ctx);
    } finally {
      count(outcome);
    }
  };

  async function answer(ctx: Context): Promise<CallOutcome<R | 'error' | 'refused'>> {
    let outcome: CallOutcome<R | 'error' | 'refused'>;
    const event = auditEvent({ type, outcome: 'failure', ...requestSource(ctx) });
    // Known before the body is read, so even a malformed request is attributed to its caller.
    event.client_id = scrub(basicClientId(ctx.get('authorization')));
    try {
      if (repeatedAuthorization(ctx)) throw OAuthError.invalidRequest('the request must carry at most one Authorization header', 'repeated_authorization');
      const form = await readForm(ctx, CALLER_PARAMETERS);
      event.client_id ??= scrub(form.get('client_id'));
      const credentials = { ...readClientCredentials(ctx.get('authorization'), form), remoteAddr: ctx.ip };
      event.client_id = scrub(credentials.clientId);
      const caller = await authenticateOrThrow(deps.authenticate, credentials, deps.limits.addressUnit(credentials.remoteAddr));
      authenticatedAs(ctx, caller.clientId);
      const current = async () => {
        const again = await deps.authenticate.reconfirm(credentials.clientId, credentials.secret, credentials.method);
        if (!again.ok) throw OAuthError.invalidClient(again.reason);
        return again.client;
      };
      const { body, audit, result } = await handle(current, form);
      Object.assign(event, { outcome: 'success', ...audit, details: JSON.stringify(audit.details) });
      ctx.status = 200;
      ctx.body = body;
      outcome = { result };
    } catch (err) {
      if (!(err instanceof OAuthError)) {
        // Audited like any other answer (the last-resort handler sends the 500 and logs the error);
        // a row that cannot be committed either must not hide the error that caused it.
        Object.assign(event, { error: 'server_error', reason: 'server_error' });
        await deps.auditLog.record(event).catch(() => {});
        throw err;
      }
      Object.assign(event, { error: err.error, reason: err.reason });
      writeOAuthError(ctx, err, deps.issuer);
      outcome = { result: err.status === 429 || err.status === 503 ? 'refused' : 'error', error: err.error };
      if (err.refusal && !deps.limits.refusals.admit(err.refusal)) return outcome;
    }
    // Committed before the answer leaves; if it cannot be, the caller gets server_error instead.
    await deps.auditLog.record(event);
    return outcome;
  }
}

/** RFC 7662: `{"active": true, …claims}` only for an active token the caller may know about. */
export function introspectEndpoint(deps: IntrospectionDeps): Middleware {
  const count = (outcome: CallOutcome<IntrospectionResult>) => deps.metrics.introspection(outcome);
  return callerEndpoint<'active' | 'inactive'>('token.introspected', deps, async (caller, form) => {
    const inspection = await deps.inspect(requiredToken(form));
    const claims = inspection.claims;
    const permitted = claims !== undefined && mayInspect(await caller(), claims.aud);
    const active = inspection.active && permitted;
    const reason = !inspection.active ? inspection.reason : permitted ? null : 'not_permitted';
    return {
      body: active ? { active: true, ...claims, token_type: 'Bearer' } : { active: false },
      // Facts about a token the caller may not see stay out of its own audit row too, except the reason.
      audit: { jti: permitted ? claims.jti : null, audience: permitted ? claims.aud : null, token_expires_at: null, reason, details: { active } },
      result: active ? 'active' : 'inactive',
    };
  }, count);
}

/**
 * RFC 7009: the client the token was issued to, or one with introspection rights over its
 * audience, may revoke it. Unknown, invalid, expired or already revoked tokens get the same 200.
 */
export function revokeEndpoint(deps: IntrospectionDeps): Middleware {
  const count = (outcome: CallOutcome<RevocationResult>) => deps.metrics.revocation(outcome);
  return callerEndpoint<'revoked' | 'unchanged'>('token.revoked', deps, async (caller, form) => {
    const inspection = await deps.inspect(requiredToken(form));
    const { claims } = inspection;
    if (!claims) {
      return {
        body: '',
        audit: { jti: null, audience: null, token_expires_at: null, reason: inspection.active ? null : inspection.reason, details: { revoked: false } },
        result: 'unchanged',
      };
    }
    const revoker = await caller();
    if (revoker.clientId !== claims.client_id && !mayInspect(revoker, claims.aud)) {
      throw new OAuthError(400, 'unauthorized_client', 'the client may not revoke this token', 'not_permitted');
    }
    // Recorded whatever the client's state: a token inactive only because its client is disabled
    // must stay revoked when the client is enabled again.
    const revoked = await insertRevokedToken(deps.db, { jti: claims.jti, clientId: claims.client_id, expiresAt: claims.exp }, epochSeconds(deps.clock));
    return {
      body: '',
      audit: { jti: claims.jti, audience: claims.aud, token_expires_at: claims.exp, reason: revoked ? null : 'already_revoked', details: { revoked } },
      result: revoked ? 'revoked' : 'unchanged',
    };
  }, count);
}
