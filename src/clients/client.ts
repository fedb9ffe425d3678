/** The client domain object, its one row mapper, and its wire (RFC 7591-style) presentation. */
import type { ClientRow } from './client.table.js';

export const AUTH_METHODS = ['client_secret_basic', 'client_secret_post'] as const;
export type AuthMethod = (typeof AUTH_METHODS)[number];

export const GRANT_TYPES = ['client_credentials'] as const;
export type GrantType = (typeof GRANT_TYPES)[number];

export interface Client {
  readonly clientId: string;
  readonly clientName: string;
  readonly description: string | null;
  /** Scopes the client may request. */
  readonly scopes: readonly string[];
  /** Scopes granted when a request names none. */
  readonly defaultScopes: readonly string[];
  /** Audiences (RFC 8707 resource indicators) the client may request. */
  readonly audiences: readonly string[];
  readonly defaultAudience: string | null;
  /** Audiences whose tokens this client may introspect and revoke; `*` for all. */
  readonly introspectionAudiences: readonly string[];
  /** Its tokens issued at or before this time (epoch seconds) are revoked; null: none. */
  readonly tokensRevokedBefore: number | null;
  readonly grantTypes: readonly GrantType[];
  readonly authMethod: AuthMethod;
  /** Seconds; null means the server default. */
  readonly accessTokenTtl: number | null;
  /** Tokens per minute; null means the server default, 0 no limit. */
  readonly tokenRateLimit: number | null;
  readonly enabled: boolean;
  /** Epoch seconds. */
  readonly createdAt: number;
  readonly updatedAt: number;
}

const words = (value: string | null): string[] => (value ? value.split(' ').filter(Boolean) : []);

export function toClient(row: ClientRow): Client {
  return {
    clientId: row.client_id,
    clientName: row.client_name,
    description: row.description,
    scopes: words(row.scope),
    defaultScopes: words(row.default_scope),
    audiences: JSON.parse(row.audience) as string[],
    defaultAudience: row.default_audience,
    introspectionAudiences: JSON.parse(row.introspection_audiences) as string[],
    tokensRevokedBefore: row.tokens_revoked_before === null ? null : Number(row.tokens_revoked_before),
    grantTypes: JSON.parse(row.grant_types) as GrantType[],
    authMethod: row.token_endpoint_auth_method as AuthMethod,
    accessTokenTtl: row.access_token_ttl === null ? null : Number(row.access_token_ttl),
    tokenRateLimit: row.token_rate_limit === null ? null : Number(row.token_rate_limit),
    enabled: Number(row.enabled) === 1,
    createdAt: Number(row.created_at),
    updatedAt: Number(row.updated_at),
  };
}

/** The inverse of toClient: how a client is stored. */
export function toClientRow(client: Client): ClientRow {
  return {
    client_id: client.clientId,
    client_name: client.clientName,
    description: client.description,
    scope: client.scopes.join(' '),
    default_scope: client.defaultScopes.join(' ') || null,
    audience: JSON.stringify(client.audiences),
    default_audience: client.defaultAudience,
    introspection_audiences: JSON.stringify(client.introspectionAudiences),
    tokens_revoked_before: client.tokensRevokedBefore,
    grant_types: JSON.stringify(client.grantTypes),
    token_endpoint_auth_method: client.authMethod,
    access_token_ttl: client.accessTokenTtl,
    token_rate_limit: client.tokenRateLimit,
    enabled: client.enabled ? 1 : 0,
    created_at: client.createdAt,
    updated_at: client.updatedAt,
  };
}

/** Client JSON shared by the CLI and the admin API; names follow RFC 7591 client metadata. */
export interface ClientJson {
  client_id: string;
  client_name: string;
  description: string | null;
  scope: string;
  default_scope: string;
  audience: string[];
  default_audience: string | null;
  introspection_audiences: string[];
  grant_types: string[];
  token_endpoint_auth_method: AuthMethod;
  access_token_ttl: number | null;
  token_rate_limit: number | null;
  enabled: boolean;
  created_at: string;
  updated_at: string;
}

export function presentClient(client: Client): ClientJson {
  return {
    client_id: client.clientId,
    client_name: client.clientName,
    description: client.description,
    scope: client.scopes.join(' '),
    default_scope: client.defaultScopes.join(' '),
    audience: [...client.audiences],
    default_audience: client.defaultAudience,
    introspection_audiences: [...client.introspectionAudiences],
    grant_types: [...client.grantTypes],
    token_endpoint_auth_method: client.authMethod,
    access_token_ttl: client.accessTokenTtl,
    token_rate_limit: client.tokenRateLimit,
    enabled: client.enabled,
    created_at: new Date(client.createdAt * 1000).toISOString(),
    updated_at: new Date(client.updatedAt * 1000).toISOString(),
  };
}
