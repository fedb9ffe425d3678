/**
 * Validation of client settings as an operator supplies them (CLI flags today, admin JSON later).
 * Pure: returns normalized settings or throws InvalidSettingError naming the field.
 */
import { scrub } from '../audit/audit-log.js';
import { AUTH_METHODS, GRANT_TYPES, type AuthMethod, type GrantType } from './client.js';

export class InvalidSettingError extends Error {
  readonly code = 'ERR_INVALID_SETTING';
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(message);
    this.name = 'InvalidSettingError';
  }
}

/** What an operator may set when creating a client; field names are the wire names. */
export interface ClientSettingsInput {
  client_id?: string | undefined;
  client_name?: string | undefined;
  description?: string | null | undefined;
  scope?: string | undefined;
  default_scope?: string | undefined;
  audience?: readonly string[] | undefined;
  default_audience?: string | null | undefined;
  introspection_audiences?: readonly string[] | undefined;
  grant_types?: readonly string[] | undefined;
  token_endpoint_auth_method?: string | undefined;
  access_token_ttl?: number | null | undefined;
  token_rate_limit?: number | null | undefined;
  enabled?: boolean | undefined;
}

export interface ClientSettings {
  clientId: string | undefined;
  clientName: string;
  description: string | null;
  scopes: string[];
  defaultScopes: string[];
  audiences: string[];
  defaultAudience: string | null;
  introspectionAudiences: string[];
  grantTypes: GrantType[];
  authMethod: AuthMethod;
  accessTokenTtl: number | null;
  tokenRateLimit: number | null;
  enabled: boolean;
}

export interface SettingLimits {
  /** ACCESS_TOKEN_MAX_TTL: no client may exceed it. */
  readonly maxAccessTokenTtl: number;
}

const MIN_TTL = 60;
const MAX_TOKEN_RATE = 1_000_000;
// RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
const SCOPE_TOKEN = /^[\x21\x23-\x5B\x5D-\x7E]{1,128}$/;
// Unreserved URI characters only, so the id survives Basic-auth form-encoding and URLs unchanged.
const CLIENT_ID = /^[A-Za-z0-9._~-]{3,128}$/;

/** Whether some client could have this id: the alphabet and length are public. */
export const isPossibleClientId = (id: string): boolean => CLIENT_ID.test(id);
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;
// RFC 3986 §2: unreserved, reserved and percent-encoded characters.
const URI_CHARACTERS = /^[A-Za-z0-9\-._~:/?#[\]@!$&'()*+,;=%]+$/;
// In u-mode a valid pair reads as one astral code point, so only unpaired halves match.
const LONE_SURROGATE = /\p{Cs}/u;

/** Validates and normalizes the settings of a new client. */
export function validateNewClient(input: ClientSettingsInput, limits: SettingLimits): ClientSettings {
  const clientName = input.client_name?.trim();
  if (!clientName) throw new InvalidSettingError('client_name', 'client_name is required');
  // Lone surrogates would be stored as U+FFFD: what was acknowledged would differ from what is kept.
  if (clientName.length > 200 || CONTROL.test(clientName) || LONE_SURROGATE.test(clientName)) {
    throw new InvalidSettingError('client_name', 'client_name must be at most 200 printable characters');
  }

  if (input.client_id !== undefined && !CLIENT_ID.test(input.client_id)) {
    throw new InvalidSettingError('client_id', 'client_id must be 3-128 characters from A-Z a-z 0-9 . _ ~ -');
  }
  // The audit log masks what looks like a secret or a JWT; such an id would be recorded masked, and
  // revoking one of its tokens by jti (which finds the client in the log) would miss it.
  if (input.client_id !== undefined && scrub(input.client_id) !== input.client_id) {
    throw new InvalidSettingError('client_id', 'client_id must not look like a client secret or a JWT');
  }

  const description = input.description ?? null;
  if (description !== null && (description.length > 1000 || CONTROL.test(description) || LONE_SURROGATE.test(description))) {
    throw new InvalidSettingError('description', 'description must be at most 1000 printable characters');
  }

  const scopes = parseScope('scope', input.scope ?? '');
  const defaultScopes = input.default_scope === undefined ? scopes : parseScope('default_scope', input.default_scope);
  const notAllowed = defaultScopes.filter((s) => !scopes.includes(s));
  if (notAllowed.length > 0) {
    throw new InvalidSettingError('default_scope', `default_scope must be a subset of scope; not allowed: ${notAllowed.join(' ')}`);
  }

  const audiences = unique(input.audience ?? []);
  audiences.forEach((a) => checkAudience('audience', a));
  let defaultAudience = input.default_audience ?? null;
  if (input.default_audience === undefined && audiences.length === 1) defaultAudience = audiences[0] ?? null;
  if (defaultAudience !== null && !audiences.includes(defaultAudience)) {
    throw new InvalidSettingError('default_audience', 'default_audience must be one of audience');
  }

  const introspectionAudiences = unique(input.introspection_audiences ?? []);
  if (introspectionAudiences.includes('*') && introspectionAudiences.length > 1) {
    throw new InvalidSettingError('introspection_audiences', 'introspection_audiences is either ["*"] or a list of audiences');
  }
  introspectionAudiences.filter((a) => a !== '*').forEach((a) => checkAudience('introspection_audiences', a));

  const grantTypes = unique(input.grant_types ?? GRANT_TYPES);
  for (const g of grantTypes) {
    if (!(GRANT_TYPES as readonly string[]).includes(g)) {
      throw new InvalidSettingError('grant_types', `unsupported grant type ${JSON.stringify(g)}; supported: ${GRANT_TYPES.join(', ')}`);
    }
  }

  const authMethod = input.token_endpoint_auth_method ?? 'client_secret_basic';
  if (!(AUTH_METHODS as readonly string[]).includes(authMethod)) {
    throw new InvalidSettingError('token_endpoint_auth_method', `token_endpoint_auth_method must be one of ${AUTH_METHODS.join(', ')}`);
  }

  const ttl = input.access_token_ttl ?? null;
  if (ttl !== null && (!Number.isInteger(ttl) || ttl < MIN_TTL || ttl > limits.maxAccessTokenTtl)) {
    throw new InvalidSettingError(
      'access_token_ttl',
      `access_token_ttl must be a whole number of seconds between ${MIN_TTL} and ${limits.maxAccessTokenTtl} (ACCESS_TOKEN_MAX_TTL)`,
    );
  }

  const rate = input.token_rate_limit ?? null;
  if (rate !== null && (!Number.isInteger(rate) || rate < 0 || rate > MAX_TOKEN_RATE)) {
    throw new InvalidSettingError('token_rate_limit', `token_rate_limit must be a whole number of tokens per minute between 0 (no limit) and ${MAX_TOKEN_RATE}, or null for the server default`);
  }

  return {
    clientId: input.client_id,
    clientName,
    description,
    scopes,
    defaultScopes,
    audiences,
    defaultAudience,
    introspectionAudiences,
    grantTypes: grantTypes as GrantType[],
    authMethod: authMethod as AuthMethod,
    accessTokenTtl: ttl,
    tokenRateLimit: rate,
    enabled: input.enabled ?? true,
  };
}

function parseScope(field: string, value: string): string[] {
  const tokens = unique(value.split(' ').filter(Boolean));
  for (const token of tokens) {
    if (!SCOPE_TOKEN.test(token)) {
      throw new InvalidSettingError(field, `${field} has an invalid scope token ${JSON.stringify(token)} (RFC 6749 §3.3)`);
    }
  }
  return tokens;
}

/** RFC 8707 §2: a resource indicator is an absolute URI without a fragment. */
function checkAudience(field: string, value: string): void {
  const url = URL.parse(value);
  // URL.parse trims, and percent-encodes what RFC 3986 does not allow (spaces, quotes, <, >, |,
  // non-ASCII), but the value is stored and compared as given: it must already be a URI.
  if (!url || value.includes('#') || value.length > 512 || !URI_CHARACTERS.test(value)) {
    throw new InvalidSettingError(field, `${field} value ${JSON.stringify(value)} must be an absolute URI without a fragment (RFC 8707)`);
  }
}

const unique = (values: readonly string[]): string[] => [...new Set(values)];
