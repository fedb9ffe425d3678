/**
 * Step 1 of a token request: what did the workload ask for? oidc-provider has already read the
 * form body and rejected duplicated parameters it knows (RFC 6749 §3.2); this reads the two it
 * leaves to us: the audience, named by `resource` (RFC 8707) or by the widespread `audience`
 * parameter, and the scope.
 */
import type { Middleware } from 'koa';

import { repeatedAuthorization } from '../http/headers.js';
import { FORM_LIMIT_BYTES } from '../http/read-form.js';
import { tokenState } from './request-state.js';

export type RequestedAudience =
  | { readonly kind: 'none' }
  | { readonly kind: 'requested'; readonly value: string }
  /** `resource` given more than once: RFC 8707 allows it, Tessera issues for one audience. */
  | { readonly kind: 'several' }
  /** `audience` given more than once: a duplicated parameter (RFC 6749 §3.2). */
  | { readonly kind: 'duplicated' }
  | { readonly kind: 'conflicting' };

export interface TokenRequest {
  /** Requested scopes, or undefined when the request names none (then the client's default applies). */
  readonly scopes: readonly string[] | undefined;
  readonly audience: RequestedAudience;
}

type FormValue = string | string[] | undefined;

export interface RawTokenParams {
  readonly scope?: FormValue;
  readonly resource?: FormValue;
  readonly audience?: FormValue;
}

export function parseTokenRequest(params: RawTokenParams): TokenRequest {
  return { scopes: parseScope(params.scope), audience: parseAudience(params.resource, params.audience) };
}

function parseScope(scope: FormValue): string[] | undefined {
  if (typeof scope !== 'string') return undefined;
  const scopes = [...new Set(scope.split(' ').filter(Boolean))];
  return scopes.length > 0 ? scopes : undefined;
}

function parseAudience(resource: FormValue, audience: FormValue): RequestedAudience {
  if (Array.isArray(audience)) return { kind: 'duplicated' };
  if (Array.isArray(resource)) return { kind: 'several' };
  // An empty value counts as absent, as the engine treats every empty parameter.
  const named = [resource, audience].filter((v): v is string => typeof v === 'string' && v !== '');
  if (named.length > 1) return { kind: 'conflicting' };
  return named[0] === undefined ? { kind: 'none' } : { kind: 'requested', value: named[0] };
}

/**
 * The engine reads at most 1,000 parameters and drops the rest unseen, a repeated one included
 * (RFC 6749 §3.2): a request naming more than this many is refused instead. A token request needs
 * a handful.
 */
export const MAX_PARAMETERS = 100;

export function tooManyParameters(body: Readonly<Record<string, unknown>> | undefined): boolean {
  let count = 0;
  for (const value of Object.values(body ?? {})) count += Array.isArray(value) ? value.length : 1;
  return count > MAX_PARAMETERS;
}

/**
 * Before the engine reads the body: one Authorization header at most (http/headers.ts), at most
 * FORM_LIMIT_BYTES (16 KiB, as at introspection; the engine alone would take 56 KiB), and its length
 * declared up front (RFC 9110 §15.5.12, 411), so a body is refused before a byte of it is read.
 * Every OAuth client sends Content-Length on a form.
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
