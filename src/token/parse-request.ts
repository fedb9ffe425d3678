/**
 * Step 1 of a token request: the form, read strictly (http/read-form.ts: 16 KiB, 100 parameters,
 * each of ours at most once, RFC 6749 §3.2), and what the workload asked for: the grant type, the scope, and the
 * audience, named by `resource` (RFC 8707) or by the widespread `audience` parameter.
 */
import type { Context, Middleware } from 'koa';

import { repeatedAuthorization } from '../http/headers.js';
import { OAuthError } from '../http/oauth-error.js';
import { FORM_LIMIT_BYTES, readForm, type Form } from '../http/read-form.js';
import { tokenState } from './request-state.js';

export interface TokenRequest {
  /** Requested scopes, or undefined when the request names none (then the client's default applies). */
  readonly scopes: readonly string[] | undefined;
  /** The audience requested, or undefined when none is (then the client's default applies). */
  readonly audience: string | undefined;
}

/** RFC 6749 §4.4.2, RFC 8707 §2, and the client's credentials (§2.3.1): every other parameter is ignored. */
const PARAMETERS: ReadonlySet<string> = new Set(['grant_type', 'scope', 'resource', 'audience', 'client_id', 'client_secret']);

/** RFC 8707 allows `resource` more than once; Tessera issues a token for one audience. */
const repeated = (name: string) =>
  name === 'resource' ? new OAuthError(400, 'invalid_target', 'only one audience may be requested', 'audience_repeated') : OAuthError.duplicateParameter(name);

/** RFC 6749 §3.3: scope-tokens of NQCHAR, one space between them. */
const SCOPE = /^[\x21\x23-\x5B\x5D-\x7E]+(?: [\x21\x23-\x5B\x5D-\x7E]+)*$/;

/**
 * Reads the form and checks what needs no client: the grant type, the scope's syntax, one
 * audience. `state.form` is set as soon as the body is read, so that a refusal is attributed.
 */
export async function readTokenForm(ctx: Context): Promise<Form> {
  const form = (tokenState(ctx).form = await readForm(ctx, PARAMETERS, repeated));
  const grantType = form.get('grant_type');
  if (grantType === undefined) throw OAuthError.invalidRequest('the grant_type parameter is required', 'grant_type_missing');
  if (grantType !== 'client_credentials') {
    throw new OAuthError(400, 'unsupported_grant_type', 'only the client_credentials grant type is supported', 'grant_type_unsupported');
  }
  const scope = form.get('scope');
  if (scope !== undefined && !SCOPE.test(scope)) throw new OAuthError(400, 'invalid_scope', 'the scope parameter is malformed', 'scope_malformed');
  if (form.has('resource') && form.has('audience')) throw OAuthError.invalidRequest('use either resource or audience, not both', 'audience_conflict');
  return form;
}

export function parseTokenRequest(form: Form): TokenRequest {
  const scope = form.get('scope');
  return { scopes: scope === undefined ? undefined : [...new Set(scope.split(' '))], audience: form.get('resource') ?? form.get('audience') };
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
