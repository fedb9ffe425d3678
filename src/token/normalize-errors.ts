/**
 * The engine's error answers, made Tessera's. Every failed client authentication gets the same
 * answer, RFC 6749 §5.2 `invalid_client` with status 401 and a WWW-Authenticate challenge
 * (RFC 7235 §3.1), too much argon2 work waiting a `503 temporarily_unavailable` with Retry-After,
 * a request refused by a limit (limits/) `429` with Retry-After, a few other failures that a retry
 * a second later gets past `503` with Retry-After, and every internal failure the same generic
 * `server_error`.
 *
 * oidc-provider answers some failures before Tessera's secret check runs — no credentials, a
 * malformed Basic header — with `invalid_request`, and its 401s carry a challenge only when Basic
 * was used. Wrapped around the engine, this step rewrites those answers and records a reason code.
 * The engine's descriptions are matched exactly; the tests pin each one, so an engine upgrade that
 * rewords them fails loudly instead of leaking a different answer.
 */
import type { Middleware } from 'koa';

import { INVALID_CLIENT, RETRY_AFTER, SERVER_ERROR, TEMPORARILY_UNAVAILABLE, THROTTLED_DESCRIPTIONS, basicChallenge } from '../http/oauth-error.js';
import { tokenState } from './request-state.js';

const ENGINE_AUTH_FAILURES: ReadonlyMap<string, string> = new Map([
  ['no client authentication mechanism provided', 'credentials_missing'],
  ['invalid authorization header value format', 'credentials_malformed'],
  ['client_id and client_secret in the authorization header are not properly encoded', 'credentials_malformed'],
  ['client_secret must be provided in the Authorization header', 'secret_missing'],
  // A client_id in the body with an empty client_secret: the engine sees no secret-based method.
  ['the provided authentication mechanism does not match the registered client authentication method', 'secret_missing'],
]);

/** Failures a retry a second later gets past, by reason code: `503` with Retry-After. */
const RETRY_SHORTLY: ReadonlyMap<string, string> = new Map([
  ['overloaded', TEMPORARILY_UNAVAILABLE.error_description],
  // The key was revoked while the token was being signed: the retry signs with its replacement.
  ['signing_key_revoked', 'the signing key changed; retry shortly'],
  // A token issued in the second its client's tokens were revoked would be inactive from birth.
  ['tokens_revoked_this_second', "the client's tokens were revoked this second; retry shortly"],
]);

export function normalizeErrors(issuer: string): Middleware {
  const challenge = basicChallenge(issuer);
  return async function normalizeErrors(ctx, next) {
    await next();
    const state = tokenState(ctx);
    const description = state.failure?.description;
    const reason = description === undefined ? undefined : ENGINE_AUTH_FAILURES.get(description);
    if (reason !== undefined) {
      state.failure = { reason, description };
      ctx.status = 401;
      ctx.body = { ...INVALID_CLIENT };
    }
    if (ctx.status === 401) ctx.set('WWW-Authenticate', challenge);
    const throttled = state.failure?.throttled;
    if (throttled) {
      ctx.status = 429;
      ctx.set('Retry-After', String(throttled.retryAfter));
      ctx.body = { error: 'temporarily_unavailable', error_description: THROTTLED_DESCRIPTIONS[throttled.key.reason] ?? 'too many requests' };
    } else if (RETRY_SHORTLY.has(state.failure?.reason ?? '')) {
      ctx.status = 503;
      ctx.set('Retry-After', RETRY_AFTER);
      ctx.body = { error: TEMPORARILY_UNAVAILABLE.error, error_description: RETRY_SHORTLY.get(state.failure!.reason) };
    } else if (ctx.status >= 500) {
      ctx.body = { ...SERVER_ERROR };
    }
  };
}
