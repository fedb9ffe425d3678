/**
 * Step 1 of a token request: what did the workload ask for? oidc-provider has already read the
 * form body and rejected duplicated parameters it knows (RFC 6749 §3.2); this reads the two it
 * leaves to us: the audience, named by `resource` (RFC 8707) or by the widespread `audience`
 * parameter, and the scope.
 */
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
