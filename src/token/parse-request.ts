/**
 * Step 1 of a token request: the form, read strictly (http/read-form.ts: 16 KiB, UTF-8, every
 * parameter at most once, RFC 6749 §3.2), and what the workload asked for: the grant type, the
 * scope, and the audience, named by `resource` (RFC 8707) or by the widespread `audience` parameter.
 */
import type { Context, Middleware } from 'koa';

import { repeatedAuthorization } from '../http/headers.js';
import { OAuthError } from '../http/oauth-error.js';
import { FORM_LIMIT_BYTES, readForm, type Form } from '../http/read-form.js';
import { tokenState } from './request-state.js';

export type RequestedAudience =
  | { readonly kind: 'none' }
  | { readonly kind: 'requested'; readonly value: string }
  | { readonly kind: 'conflicting' };

export interface TokenRequest {
  /** Requested scopes, or undefined when the request names none (then the client's default applies). */
  readonly scopes: readonly string[] | undefined;
  readonly audience: RequestedAudience;
}

/** A token request needs a handful of parameters; a form naming more than this is refused. */
export const MAX_PARAMETERS = 100;

/** RFC 8707 allows `resource` more than once; Tessera issues a token for one audience. */
const repeated = (name: string) =>
  name === 'resource' ? new OAuthError(400, 'invalid_target', 'only one audience may be requested', 'audience_repeated') : OAuthError.duplicateParameter(name);

/** Reads the form and checks the grant type: nothing here costs argon2 work. */
export async function readTokenForm(ctx: Context): Promise<Form> {
  const form = await readForm(ctx, repeated);
  if (form.size > MAX_PARAMETERS) throw OAuthError.invalidRequest(`the request must not have more than ${MAX_PARAMETERS} parameters`, 'too_many_parameters');
  const grantType = form.get('grant_type');
  if (grantType === undefined || grantType === '') throw OAuthError.invalidRequest('the grant_type parameter is required', 'grant_type_missing');
  if (grantType !== 'client_credentials') {
    throw new OAuthError(400, 'unsupported_grant_type', 'only the client_credentials grant type is supported', 'grant_type_unsupported');
  }
  return form;
}

export function parseTokenRequest(form: Form): TokenRequest {
  return { scopes: parseScope(form.get('scope')), audience: parseAudience(form.get('resource'), form.get('audience')) };
}

function parseScope(scope: string | undefined): string[] | undefined {
  if (scope === undefined) return undefined;
  const scopes = [...new Set(scope.split(' ').filter(Boolean))];
  return scopes.length > 0 ? scopes : undefined;
}

function parseAudience(resource: string | undefined, audience: string | undefined): RequestedAudience {
  // An empty value counts as absent, as for every parameter (RFC 6749 §3.1).
  const named = [resource, audience].filter((v): v is string => v !== undefined && v !== '');
  if (named.length > 1) return { kind: 'conflicting' };
  return named[0] === undefined ? { kind: 'none' } : { kind: 'requested', value: named[0] };
}

/**
 * Before the body is read: one Authorization header at most (http/headers.ts), at most
 * FORM_LIMIT_BYTES (16 KiB), and its length declared up front (RFC 9110 §15.5.12, 411), so a body
 * is refused before a byte of it is read. Every OAuth client sends Content-Length on a form.
 */
export const limitTokenBody: Middleware = async (ctx, next) => {
  const declared = ctx.request.length;
  const refuse = (status: number, reason: string, description: string) => {
    tokenState(ctx).failure = { reason };
    ctx.status = status;
    ctx.body = { error: 'invalid_request', error_description: description };
    // The unread body would otherwise be taken for the next request on this connection.
    ctx.set('Connection', 'close');
  };
  if (repeatedAuthorization(ctx)) {
    refuse(400, 'repeated_authorization', 'the request must carry at most one Authorization header');
  } else if (declared === undefined && ctx.get('transfer-encoding') !== '') {
    refuse(411, 'length_required', 'the request must declare its Content-Length');
  } else if (declared !== undefined && declared > FORM_LIMIT_BYTES) {
    refuse(413, 'body_too_large', `the body must not exceed ${FORM_LIMIT_BYTES} bytes`);
  } else {
    await next();
  }
};
