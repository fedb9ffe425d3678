import type { ColumnType, Insertable, Selectable, Updateable } from 'kysely';

/** `clients`: one row per OAuth client. Lists are JSON arrays in text columns, times epoch seconds. */
export interface ClientTable {
  client_id: string;
  client_name: string;
  description: string | null;
  /** Space-separated scopes the client may request. */
  scope: string;
  /** Space-separated scopes granted when a request names none; null means none. */
  default_scope: string | null;
  /** JSON array of audiences (RFC 8707 resource indicators) the client may request. */
  audience: string;
  default_audience: string | null;
  /** JSON array of grant types. */
  grant_types: string;
  token_endpoint_auth_method: string;
  /** Access-token lifetime in seconds; null means the server default. */
  access_token_ttl: number | null;
  /** Tokens per minute; null means the server default (TOKEN_RATE_LIMIT), 0 no limit. */
  token_rate_limit: ColumnType<number | null, number | null | undefined, number | null>;
  /** JSON array of audiences whose tokens this client may introspect and revoke; may be ["*"]. */
  introspection_audiences: ColumnType<string, string | undefined, string>;
  /** Tokens of this client issued at or before this time (epoch seconds) are revoked; null: none. */
  tokens_revoked_before: number | null;
  /** 1 or 0: portable across SQLite and PostgreSQL. */
  enabled: number;
  created_at: number;
  updated_at: number;
}

/** `client_secrets`: argon2id hashes only; a client may hold several during rotation. */
export interface ClientSecretTable {
  /** Public identifier, also embedded in the secret so exactly one hash is checked per request. */
  id: string;
  client_id: string;
  hash: string;
  created_at: number;
  /** After this time (epoch seconds) the secret no longer authenticates; null means never. */
  expires_at: number | null;
  last_used_at: number | null;
}

/** `clients_version`: one row whose counter triggers move on every change to the two tables above. */
export interface ClientsVersionTable {
  id: number;
  version: number;
}

export type ClientRow = Selectable<ClientTable>;
export type NewClientRow = Insertable<ClientTable>;
export type ClientUpdate = Updateable<ClientTable>;
export type ClientSecretRow = Selectable<ClientSecretTable>;
export type NewClientSecretRow = Insertable<ClientSecretTable>;
