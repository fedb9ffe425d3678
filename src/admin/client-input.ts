/**
 * Strict shape checks for admin client bodies: a JSON object, known fields only, each of the right
 * type. Meaning (scope syntax, URIs, lifetimes) is checked by clients/client-settings.ts, shared
 * with the CLI.
 */
import type { ClientSettingsInput } from '../clients/client-settings.js';
import type { ClientPatch } from '../clients/client.service.js';
import { AdminError } from './admin-error.js';

type Kind = 'string' | 'string?' | 'strings' | 'integer?' | 'boolean';

const CLIENT_FIELDS: Readonly<Record<string, Kind>> = {
  client_id: 'string',
  client_name: 'string',
  description: 'string?',
  scope: 'string',
  default_scope: 'string',
  audience: 'strings',
  default_audience: 'string?',
  introspection_audiences: 'strings',
  grant_types: 'strings',
  token_endpoint_auth_method: 'string',
  access_token_ttl: 'integer?',
  token_rate_limit: 'integer?',
  enabled: 'boolean',
};
const READ_ONLY = new Set(['client_id', 'created_at', 'updated_at', 'client_secret']);
const MAX_STRING = 2048;
const MAX_LIST = 100;

function checkKind(field: string, kind: Kind, value: unknown): void {
  const fail = (expected: string) => {
    throw AdminError.invalid(field, `${field} must be ${expected}`);
  };
  const string = (v: unknown) => typeof v === 'string' && v.length <= MAX_STRING;
  switch (kind) {
    case 'string':
      if (!string(value)) fail(`a string of at most ${MAX_STRING} characters`);
      break;
    case 'string?':
      if (value !== null && !string(value)) fail(`null or a string of at most ${MAX_STRING} characters`);
      break;
    case 'strings':
      if (!Array.isArray(value) || value.length > MAX_LIST || !value.every(string)) fail(`an array of at most ${MAX_LIST} strings`);
      break;
    case 'integer?':
      if (value !== null && !Number.isSafeInteger(value)) fail('null or a whole number');
      break;
    case 'boolean':
      if (typeof value !== 'boolean') fail('true or false');
      break;
  }
}

function parseObject(body: unknown, allowed: (field: string) => boolean): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw AdminError.invalid('body', 'the body must be a JSON object');
  const fields = body as Record<string, unknown>;
  for (const [field, value] of Object.entries(fields)) {
    // Own properties only: `constructor` or `__proto__` must not pass as known fields.
    const kind = Object.hasOwn(CLIENT_FIELDS, field) ? CLIENT_FIELDS[field] : undefined;
    if (kind === undefined || !allowed(field)) {
      throw AdminError.invalid(field, READ_ONLY.has(field) ? `${field} cannot be set` : `unknown field ${field}`);
    }
    checkKind(field, kind, value);
  }
  return fields;
}

export function parseClientCreate(body: unknown): ClientSettingsInput {
  return parseObject(body, () => true);
}

export function parseClientPatch(body: unknown): ClientPatch {
  return parseObject(body, (field) => !READ_ONLY.has(field));
}

/** `{"previous_secret_expires_in": seconds}` (optional, default one day). */
export function parseSecretRotation(body: unknown): number {
  if (body === undefined) return 86_400;
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw AdminError.invalid('body', 'the body must be a JSON object');
  for (const field of Object.keys(body)) {
    if (field !== 'previous_secret_expires_in') throw AdminError.invalid(field, `unknown field ${field}`);
  }
  const value = (body as { previous_secret_expires_in?: unknown }).previous_secret_expires_in ?? 86_400;
  // The range is the service's to check (rotateSecret), for the CLI too.
  if (typeof value !== 'number') throw AdminError.invalid('previous_secret_expires_in', 'previous_secret_expires_in must be a whole number of seconds');
  return value;
}
