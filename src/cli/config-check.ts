/**
 * `tessera config check`: the environment validated by loadConfig, exactly as the server does at
 * start-up, and every setting it yields with where it came from. Credentials are masked. Touches
 * neither the database nor the keys.
 */
import { redactCredentials, type Config } from '../config.js';

export type Source = 'environment' | 'default';

export interface Setting {
  readonly value: unknown;
  readonly source: Source;
}

/**
 * Every variable loadConfig reads, in the order of the README's table, and the value it sets. A
 * test checks that this list and loadConfig read the same variables.
 */
export const CONFIG_VARIABLES: readonly (readonly [variable: string, value: (config: Config) => unknown])[] = [
  ['PORT', (c) => c.port],
  ['HOST', (c) => c.host],
  ['ISSUER', (c) => c.issuer],
  ['DATABASE_URL', (c) => c.databaseUrl],
  ['DATABASE_POOL_SIZE', (c) => c.databasePoolSize],
  ['KEYS_DIR', (c) => c.keysDir],
  ['ACCESS_TOKEN_TTL', (c) => c.accessTokenTtl],
  ['ACCESS_TOKEN_MAX_TTL', (c) => c.accessTokenMaxTtl],
  ['JWKS_MAX_AGE', (c) => c.jwksMaxAge],
  ['KEY_SIZE', (c) => c.keySize],
  ['KEY_ROTATION_DAYS', (c) => c.keyRotationDays],
  ['KEY_RELOAD_INTERVAL', (c) => c.keyReloadInterval],
  ['CLOCK_LEEWAY', (c) => c.clockLeeway],
  ['CREDENTIAL_CACHE_TTL', (c) => c.credentialCacheTtl],
  ['CREDENTIAL_CACHE_SIZE', (c) => c.credentialCacheSize],
  ['VERIFIED_TOKEN_CACHE_SIZE', (c) => c.verifiedTokenCacheSize],
  ['AUTH_FAILURES_PER_ADDRESS', (c) => c.limits.authFailuresPerAddress],
  ['AUTH_FAILURES_PER_CLIENT', (c) => c.limits.authFailuresPerClient],
  ['AUTH_FAILURE_WINDOW', (c) => c.limits.authFailureWindow],
  ['AUTH_BACKOFF_MAX_ADDRESS', (c) => c.limits.authBackoffMaxAddress],
  ['AUTH_BACKOFF_MAX_CLIENT', (c) => c.limits.authBackoffMaxClient],
  ['AUTH_IPV6_PREFIX', (c) => c.limits.authIpv6Prefix],
  ['TOKEN_CORS_ORIGINS', (c) => c.tokenCorsOrigins],
  ['TOKEN_RATE_LIMIT', (c) => c.limits.tokenRateLimit],
  ['CLIENT_CACHE_TTL', (c) => c.clientCacheTtl],
  ['ARGON2_MEMORY_KIB', (c) => c.argon2.memoryCost],
  ['ARGON2_TIME_COST', (c) => c.argon2.timeCost],
  ['ARGON2_PARALLELISM', (c) => c.argon2.parallelism],
  ['UV_THREADPOOL_SIZE', (c) => c.threadPoolSize],
  ['ARGON2_CONCURRENCY', (c) => c.argon2Limits.concurrency],
  ['ARGON2_QUEUE', (c) => c.argon2Limits.queue],
  ['ADMIN_BODY_LIMIT', (c) => c.adminBodyLimit],
  ['TESSERA_BOOTSTRAP_ADMIN', (c) => c.bootstrapAdmin],
  ['AUDIT_RETENTION_DAYS', (c) => c.auditRetentionDays],
  ['LOG_LEVEL', (c) => c.logLevel],
  ['TRUST_PROXY', (c) => c.trustProxy],
  ['METRICS_PORT', (c) => c.metricsPort],
  ['METRICS_CLIENT_LABELS', (c) => c.metricsClientLabels],
];

/** Strings (a URL above all) with their credentials masked, in arrays too; unset is null. */
function masked(value: unknown): unknown {
  if (value === undefined) return null;
  if (typeof value === 'string') return redactCredentials(value);
  if (Array.isArray(value)) return value.map(masked);
  return value;
}

/** Each setting's effective value, masked, and whether the environment set it (an empty value does not). */
export function effectiveSettings(config: Config, env: Readonly<Record<string, string | undefined>>): Record<string, Setting> {
  return Object.fromEntries(
    CONFIG_VARIABLES.map(([variable, value]) => [
      variable,
      { value: masked(value(config)), source: env[variable] === undefined || env[variable] === '' ? 'default' : 'environment' },
    ]),
  );
}

function shownValue(value: unknown): string {
  if (value === null) return '';
  if (Array.isArray(value)) return value.join(',');
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return JSON.stringify(value);
}

/** One line per setting: name, value, source, in columns. */
export function formatSettings(settings: Record<string, Setting>): string {
  const shown = Object.entries(settings).map(([variable, { value, source }]) => {
    const text = shownValue(value);
    return [variable, text === '' ? '(none)' : text, source] as const;
  });
  const width = (i: 0 | 1) => Math.max(...shown.map((row) => row[i].length));
  return shown.map(([variable, text, source]) => `${variable.padEnd(width(0))}  ${text.padEnd(width(1))}  ${source}\n`).join('');
}
