/**
 * RFC 6749 §5.2 error answers for the OAuth endpoints (token, introspection, revocation): every
 * failed client authentication gets the same 401 `invalid_client` with a challenge, a refusal by a
 * limit 429 and too much waiting work 503, both with Retry-After, and the reason goes to the audit
 * log only.
 */
import type { Context } from 'koa';

import type { Throttled } from '../limits/index.js';
import { overloadRefusal, type RefusalKey } from '../limits/refusals.js';

export const INVALID_CLIENT = { error: 'invalid_client', error_description: 'client authentication failed' } as const;
export const SERVER_ERROR = { error: 'server_error', error_description: 'the request could not be completed' } as const;
export const TEMPORARILY_UNAVAILABLE = { error: 'temporarily_unavailable', error_description: 'too many requests are waiting; retry shortly' } as const;
export const THROTTLED_DESCRIPTIONS: Readonly<Record<string, string>> = {
  auth_backoff: 'too many failed client authentications; retry later',
  token_rate_limited: 'too many tokens requested by this client; reuse a token until it expires',
};
/** Seconds a caller refused for overload should wait. */
export const RETRY_AFTER = '1';

/** The RFC 7235 challenge every invalid_client answer carries. */
export const basicChallenge = (issuer: string): string =>
  `Basic realm="${issuer}", error="${INVALID_CLIENT.error}", error_description="${INVALID_CLIENT.error_description}"`;

export type OAuthErrorCode =
  | 'invalid_request'
  | 'invalid_client'
  | 'unauthorized_client'
  | 'unsupported_grant_type'
  | 'invalid_scope'
  | 'invalid_target'
  | 'unsupported_token_type'
  | 'temporarily_unavailable';

export class OAuthError extends Error {
  constructor(
    readonly status: number,
    readonly error: OAuthErrorCode,
    /** Sent to the caller. */
    readonly description: string,
    /** Internal reason code, for the audit log only. */
    readonly reason: string,
    /** Seconds, for 429 answers (503s always say 1). */
    readonly retryAfter?: number,
    /** Set when a limit refused the request: its audit row may be aggregated. */
    readonly refusal?: RefusalKey,
  ) {
    super(description);
    this.name = 'OAuthError';
  }

  static invalidClient(reason: string): OAuthError {
    return new OAuthError(401, 'invalid_client', INVALID_CLIENT.error_description, reason);
  }

  static overloaded(addressUnit: string): OAuthError {
    return new OAuthError(503, 'temporarily_unavailable', TEMPORARILY_UNAVAILABLE.error_description, 'overloaded', undefined, overloadRefusal(addressUnit));
  }

  static throttled(err: Throttled): OAuthError {
    return new OAuthError(429, 'temporarily_unavailable', THROTTLED_DESCRIPTIONS[err.key.reason] ?? 'too many requests', err.key.reason, err.retryAfter, err.key);
  }

  /** A failure a retry a second later gets past. */
  static retryShortly(description: string, reason: string): OAuthError {
    return new OAuthError(503, 'temporarily_unavailable', description, reason);
  }

  static invalidRequest(description: string, reason: string, status = 400): OAuthError {
    return new OAuthError(status, 'invalid_request', description, reason);
  }

  static duplicateParameter(name: string): OAuthError {
    return OAuthError.invalidRequest(`parameter ${name.slice(0, 64)} must not be repeated`, 'duplicate_parameter');
  }
}

export function writeOAuthError(ctx: Context, err: OAuthError, issuer: string): void {
  ctx.status = err.status;
  ctx.body = { error: err.error, error_description: err.description };
  if (err.status === 401) ctx.set('WWW-Authenticate', basicChallenge(issuer));
  if (err.status === 503) ctx.set('Retry-After', RETRY_AFTER);
  if (err.status === 429) ctx.set('Retry-After', String(err.retryAfter ?? 1));
}
