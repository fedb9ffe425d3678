/**
 * POST /oauth/token (RFC 6749 §4.4 client_credentials, RFC 9068 JWT access tokens). Start here.
 *
 * oidc-provider runs the protocol; Tessera's steps plug into it. A request meets them in order:
 *   1. parse-request.ts        one Authorization header, 16 KiB and 100 parameters at most; we read scope and audience
 *      provider/adapter.ts     the engine gets the same stand-in client for any id (no lookup)
 *   2. authenticate-client.ts  one argon2id verify, as the engine's Client#compareClientSecret;
 *      normalize-errors.ts     every authentication failure answered as one 401 invalid_client
 *   3. policy.ts               scope ⊆ allowed, audience allowed, lifetime (the engine's resource-server hooks)
 *   4. sign                    the engine signs an RS256 `at+jwt` with the active key from keys/
 *   5. audit.ts                the row is committed before the response leaves
 *      ops/metrics.ts          the answer, as sent, is counted once (countTokenRequests)
 */
import type { Middleware } from 'koa';
import { Provider, errors, type KoaContextWithOIDC, type ResourceServer } from 'oidc-provider';

import type { AuditLog } from '../audit/audit-log.js';
import type { Client } from '../clients/client.js';
import { epochSeconds, type Clock } from '../clock.js';
import { noStore } from '../http/headers.js';

import { authenticatedAs, requestIdOf } from '../http/request-context.js';
import type { Logger } from '../log.js';
import { countTokenRequests, type Metrics } from '../ops/metrics.js';
import { SIGNING_ALG } from '../keys/keystore.js';
import { auditTokenRequest } from './audit.js';
import { Overloaded } from '../clients/work-pool.js';
import { Throttled, type Limits } from '../limits/index.js';
import { overloadRefusal, type Refusals } from '../limits/refusals.js';
import type { Authenticator } from './authenticate-client.js';
import { normalizeErrors } from './normalize-errors.js';
import { MAX_PARAMETERS, limitTokenBody, parseTokenRequest, tooManyParameters } from './parse-request.js';
import { decide, type Grant, type PolicyLimits } from './policy.js';
import { tokenState } from './request-state.js';

export interface TokenHookDeps {
  readonly authenticate: Authenticator;
  readonly rateLimits: Limits;
  readonly log: Logger;
  readonly limits: PolicyLimits;
  readonly clock: Clock;
}

/** The functions oidc-provider calls during a token request (installed by provider/create-provider.ts). */
export interface TokenHooks {
  /** Installed on the engine's Client prototype: `this` is the engine's client. */
  readonly compareClientSecret: (this: { clientId: string }, presented: string) => Promise<boolean>;
  readonly defaultResource: (ctx: KoaContextWithOIDC) => string;
  readonly getResourceServerInfo: (ctx: KoaContextWithOIDC, resourceIndicator: string) => ResourceServer;
  readonly accessTokenTtl: (ctx: KoaContextWithOIDC, token: { resourceServer?: { accessTokenTTL?: number | undefined } | undefined }) => number;
  readonly onGrantError: (ctx: KoaContextWithOIDC, err: Error) => void;
  readonly onServerError: (ctx: KoaContextWithOIDC, err: Error) => void;
}

/** A refusal a retry a second later gets past (normalize-errors.ts answers it 503 with Retry-After). */
class RetryShortly extends Error {
  constructor(readonly reason: string) {
    super(reason);
  }
}

export function tokenHooks({ authenticate, rateLimits, log, limits, clock }: TokenHookDeps): TokenHooks {
  // Revocation counts whole seconds of iat: a token issued in the second its client's tokens were
  // revoked would be inactive at introspection from the start.
  const refuseInRevokedSecond = (client: Client) => {
    if (client.tokensRevokedBefore !== null && client.tokensRevokedBefore >= epochSeconds(clock)) throw new RetryShortly('tokens_revoked_this_second');
  };

  // Step 3: evaluated once per request, the first time the engine asks about the audience.
  function grantFor(ctx: KoaContextWithOIDC): Grant {
    const state = tokenState(ctx);
    if (state.grant) return state.grant;
    if (!state.client) throw new Error('policy evaluated before client authentication');

    const body = ctx.oidc.body as { audience?: string | string[] } | undefined;
    const request = parseTokenRequest({ scope: ctx.oidc.params?.scope as string | undefined, resource: ctx.oidc.params?.resource as string | string[] | undefined, audience: body?.audience });
    const decision = decide(state.client, request, limits);
    if (!decision.ok) {
      switch (decision.error) {
        case 'invalid_scope':
          // The typings demand a scope, but oidc-provider would echo it in the body; RFC 6749 has no such member.
          throw new errors.InvalidScope(decision.description, undefined as unknown as string, decision.reason);
        case 'invalid_target':
          throw new errors.InvalidTarget(decision.description, decision.reason);
        case 'unauthorized_client':
          throw new errors.UnauthorizedClient(decision.description, decision.reason);
        case 'invalid_request':
          throw new errors.InvalidRequest(decision.description, undefined, decision.reason);
      }
    }
    // The engine grants what `scope` names; writing the decision back makes default scopes apply.
    ctx.oidc.params!.scope = decision.grant.scopes.join(' ') || undefined;
    state.grant = decision.grant;
    return decision.grant;
  }

  return {
    async compareClientSecret(this: { clientId: string }, presented: string) {
      const ctx = Provider.ctx!;
      // The first hook the engine calls once it has read the form: before any argon2 work.
      if (tooManyParameters(ctx.oidc.body)) throw new errors.InvalidRequest(`the request must not have more than ${MAX_PARAMETERS} parameters`, undefined, 'too_many_parameters');
      // The engine reads an empty Authorization header as none and takes the body's credentials.
      const method = ctx.headers.authorization ? 'client_secret_basic' : 'client_secret_post';
      const outcome = await authenticate({ clientId: this.clientId, secret: presented, method, remoteAddr: ctx.ip });
      if (!outcome.ok) throw new errors.InvalidClientAuth(outcome.reason);
      // Known before the rate limit may refuse it: the client proved its secret either way.
      tokenState(ctx).client = outcome.client;
      authenticatedAs(ctx, outcome.client.clientId);
      // Before the rate limit takes a token, so that the retry is not refused for it.
      refuseInRevokedSecond(outcome.client);
      await rateLimits.takeToken(outcome.client.clientId, outcome.client.tokenRateLimit);
      // The shared rate limit may have waited on the database: the policy must judge the client
      // as it is now, not as it was before a change that has been answered meanwhile.
      const current = await authenticate.reconfirm(this.clientId, presented, method);
      if (!current.ok) throw new errors.InvalidClientAuth(current.reason);
      tokenState(ctx).client = current.client;
      refuseInRevokedSecond(current.client);
      return true;
    },

    defaultResource: (ctx) => grantFor(ctx).audience,

    getResourceServerInfo: (ctx, resourceIndicator) => {
      const grant = grantFor(ctx);
      const kid = tokenState(ctx).signingKid;
      if (kid === undefined) throw new Error('token request reached the engine without a signing key');
      if (resourceIndicator !== grant.audience) throw new Error('resource indicator differs from the granted audience');
      return {
        audience: grant.audience,
        scope: grant.scopes.join(' '),
        accessTokenTTL: grant.ttl,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: SIGNING_ALG, kid } },
      };
    },

    accessTokenTtl: (_ctx, token) => {
      const ttl = token.resourceServer?.accessTokenTTL;
      if (ttl === undefined) throw new Error('access token issued without a policy decision');
      return ttl;
    },

    onGrantError: (ctx, err) => {
      // Tessera's own errors carry a reason code as error_detail; the engine's carry a description
      // and sometimes, as detail, the message of the error that caused them.
      const { error_detail: detail, error_description: description } = err as { error_detail?: unknown; error_description?: unknown };
      const text = (v: unknown) => (typeof v === 'string' ? v : undefined);
      tokenState(ctx).failure = { reason: text(detail) ?? text(description) ?? err.message, description: text(description) };
    },

    onServerError: (ctx, err) => {
      if (err instanceof RetryShortly) {
        tokenState(ctx).failure = { reason: err.reason };
        return;
      }
      if (err instanceof Overloaded) {
        tokenState(ctx).failure = { reason: 'overloaded', refusal: overloadRefusal(rateLimits.addressUnit(ctx.ip)) };
        return;
      }
      if (err instanceof Throttled) {
        tokenState(ctx).failure = { reason: err.key.reason, throttled: err, refusal: err.key };
        return;
      }
      tokenState(ctx).failure = { reason: 'server_error' };
      log.error({ err, request_id: requestIdOf(ctx) }, 'token endpoint failed');
    },
  };
}

export interface TokenEndpointDeps {
  /** oidc-provider's middleware, composed to run inside our koa context. */
  readonly engine: Middleware;
  readonly auditLog: AuditLog;
  readonly refusals: Refusals;
  /** CORS for the token endpoint (http/headers.ts tokenCors): strips the engine's, adds ours. */
  readonly cors: Middleware;
  /** Every answer is counted once, as the caller gets it (ops/metrics.ts). */
  readonly metrics: Metrics;
  readonly log: Logger;
  readonly issuer: string;
}

/** POST /oauth/token's middleware, outermost first: each wraps what follows and sees its answer. */
export function tokenEndpoint({ engine, auditLog, refusals, cors, metrics, log, issuer }: TokenEndpointDeps): Middleware[] {
  return [noStore, cors, countTokenRequests(metrics), auditTokenRequest(auditLog, refusals, log), normalizeErrors(issuer), limitTokenBody, engine];
}
