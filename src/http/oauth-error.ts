/**
 * RFC 6749 §5.2 error answers for the endpoints Tessera serves itself (introspection, revocation),
 * and the bodies and challenge every OAuth endpoint shares.
 */
import type { Context } from 'koa';

export const INVALID_CLIENT = { error: 'invalid_client', error_description: 'client authentication failed' } as const;
export const SERVER_ERROR = { error: 'server_error', error_description: 'the request could not be completed' } as const;

/** The RFC 7235 challenge every invalid_client answer carries. */
export const basicChallenge = (issuer: string): string =>
  `Basic realm="${issuer}", error="${INVALID_CLIENT.error}", error_description="${INVALID_CLIENT.error_description}"`;

export type OAuthErrorCode = 'invalid_request' | 'invalid_client' | 'unauthorized_client' | 'unsupported_token_type';

export class OAuthError extends Error {
  constructor(
    readonly status: number,
    readonly error: OAuthErrorCode,
    /** Sent to the caller. */
    readonly description: string,
    /** Internal reason code, for the audit log only. */
    readonly reason: string,
  ) {
    super(description);
    this.name = 'OAuthError';
  }

  static invalidClient(reason: string): OAuthError {
    return new OAuthError(401, 'invalid_client', INVALID_CLIENT.error_description, reason);
  }

  static invalidRequest(description: string, reason: string, status = 400): OAuthError {
    return new OAuthError(status, 'invalid_request', description, reason);
  }
}

export function writeOAuthError(ctx: Context, err: OAuthError, issuer: string): void {
  ctx.status = err.status;
  ctx.body = { error: err.error, error_description: err.description };
  if (err.status === 401) ctx.set('WWW-Authenticate', basicChallenge(issuer));
}
