/**
 * POST /oauth/token (RFC 6749 §4.4 client_credentials, RFC 9068 JWT access tokens). Start here.
 *
 * A request meets these steps in order:
 *   1. parse-request.ts        one Authorization header, 16 KiB and 100 parameters at most, grant_type;
 *                              then scope and audience (`resource`, RFC 8707, or `audience`)
 *   2. authenticate-client.ts  one argon2id verify, or none for a secret verified recently;
 *      http/client-credentials.ts  Basic or post, never both (RFC 6749 §2.3.1)
 *      limits/                 the client's token rate, taken once its secret is proven
 *   3. policy.ts               scope ⊆ allowed, audience allowed, lifetime
 *   4. provider/mint-token.ts  oidc-provider signs an RS256 `at+jwt` with the active key from keys/
 *   5. audit.ts                the row is committed before the response leaves
 *      ops/metrics.ts          the answer, as sent, is counted once (countTokenRequests)
 * Errors are RFC 6749 §5.2's (http/oauth-error.ts): every failed authentication is the same 401
 * invalid_client, a limit answers 429 and a failure a retry a second later gets past 503, both with
 * Retry-After, and the reason code goes to the audit log only.
 */
import type { Context, Middleware } from 'koa';

import type { AuditLog } from '../audit/audit-log.js';
import type { Client } from '../clients/client.js';
import { epochSeconds, type Clock } from '../clock.js';
import { basicClientId, readClientCredentials } from '../http/client-credentials.js';
import { noStore } from '../http/headers.js';
import type { Form } from '../http/read-form.js';
import { OAuthError, SERVER_ERROR, writeOAuthError } from '../http/oauth-error.js';
import { authenticatedAs, requestIdOf } from '../http/request-context.js';
import type { KeyManager } from '../keys/key-manager.js';
import { Throttled, type Limits } from '../limits/index.js';
import type { Logger } from '../log.js';
import { countTokenRequests, type Metrics } from '../ops/metrics.js';
import type { TokenMinter } from '../provider/mint-token.js';
import { auditTokenRequest } from './audit.js';
import { authenticateOrThrow, type Authenticator, type PresentedCredentials } from './authenticate-client.js';
import { limitTokenBody, parseTokenRequest, readTokenForm } from './parse-request.js';
import { decide, type PolicyLimits } from './policy.js';
import { tokenState, type TokenRequestState } from './request-state.js';

export interface TokenEndpointDeps {
  readonly authenticate: Authenticator;
  readonly rateLimits: Limits;
  readonly limits: PolicyLimits;
  /** The minter for the active key (provider/mint-token.ts). */
  readonly minter: () => TokenMinter;
  readonly keys: KeyManager;
  readonly clock: Clock;
  readonly auditLog: AuditLog;
  /** CORS for the token endpoint (http/headers.ts tokenCors). */
  readonly cors: Middleware;
  /** Every answer is counted once, as the caller gets it (ops/metrics.ts). */
  readonly metrics: Metrics;
  readonly log: Logger;
  readonly issuer: string;
}

/** RFC 6749 §5.1. */
interface TokenResponse {
  readonly access_token: string;
  readonly token_type: 'Bearer';
  readonly expires_in: number;
  /** Omitted when no scope was granted. */
  readonly scope: string | undefined;
}

/** POST /oauth/token's middleware, outermost first: each wraps what follows and sees its answer. */
export function tokenEndpoint(deps: TokenEndpointDeps): Middleware[] {
  const { auditLog, rateLimits, cors, metrics, log } = deps;
  return [noStore, cors, countTokenRequests(metrics), auditTokenRequest(auditLog, rateLimits.refusals, log), limitTokenBody, issueToken(deps)];
}

function issueToken({ authenticate, rateLimits, limits, minter, keys, clock, log, issuer }: TokenEndpointDeps): Middleware {
  // Revocation counts whole seconds of iat: a token issued in the second its client's tokens were
  // revoked would be inactive at introspection from the start.
  const refuseInRevokedSecond = (client: Client) => {
    if (client.tokensRevokedBefore !== null && client.tokensRevokedBefore >= epochSeconds(clock)) {
      throw OAuthError.retryShortly("the client's tokens were revoked this second; retry shortly", 'tokens_revoked_this_second');
    }
  };

  async function issue(ctx: Context, state: TokenRequestState): Promise<TokenResponse> {
    const authorization = ctx.get('authorization');
    let form: Form;
    let credentials: PresentedCredentials;
    try {
      form = await readTokenForm(ctx);
      credentials = { ...readClientCredentials(authorization, form), remoteAddr: ctx.ip };
    } catch (err) {
      // A malformed request is still attributed to the client it names: the Basic header's, else the body's.
      state.presentedClientId = basicClientId(authorization) ?? state.form?.get('client_id');
      throw err;
    }
    state.presentedClientId = credentials.clientId;

    const proven = (state.client = await authenticateOrThrow(authenticate, credentials, rateLimits.addressUnit(ctx.ip)));
    authenticatedAs(ctx, proven.clientId);
    // Before the rate limit takes a token, so that the retry is not refused for it.
    refuseInRevokedSecond(proven);
    await rateLimits.takeToken(proven.clientId, proven.tokenRateLimit).catch((err: unknown) => {
      throw err instanceof Throttled ? OAuthError.throttled(err) : err;
    });
    // The shared rate limit may have waited on the database: the policy must judge the client as
    // it is now, not as it was before a change that has been answered meanwhile.
    const current = await authenticate.reconfirm(credentials.clientId, credentials.secret, credentials.method);
    if (!current.ok) throw OAuthError.invalidClient(current.reason);
    const client = (state.client = current.client);
    refuseInRevokedSecond(client);

    const decision = decide(client, parseTokenRequest(form), limits);
    if (!decision.ok) throw new OAuthError(400, decision.error, decision.description, decision.reason);
    const grant = (state.grant = decision.grant);

    // The key active now: a rotation or a revocation that landed while this request waited (for
    // argon2, the rate limit) applies to it.
    const signer = minter();
    const issuedAt = epochSeconds(clock);
    const { accessToken, jti } = await signer.mint(client.clientId, grant, issuedAt);
    // Revoked (or deleted) while this token was being signed: it could never verify, and the
    // revocation may already have been answered as taking effect at once. The retry signs with the
    // key active then.
    if (keys.current.verificationKey(signer.kid) === undefined) {
      throw OAuthError.retryShortly('the signing key changed; retry shortly', 'signing_key_revoked');
    }
    state.issued = { jti, expiresAt: issuedAt + grant.ttl };
    return { access_token: accessToken, token_type: 'Bearer', expires_in: grant.ttl, scope: grant.scopes.join(' ') || undefined };
  }

  return async function issueToken(ctx) {
    const state = tokenState(ctx);
    try {
      ctx.body = await issue(ctx, state);
    } catch (err) {
      if (err instanceof OAuthError) {
        state.failure = { reason: err.reason, refusal: err.refusal };
        writeOAuthError(ctx, err, issuer);
        return;
      }
      state.failure = { reason: 'server_error' };
      log.error({ err, request_id: requestIdOf(ctx) }, 'token endpoint failed');
      ctx.status = 500;
      ctx.body = { ...SERVER_ERROR };
    }
  };
}
