/**
 * Configuration: the only module that reads the environment. Every problem is collected and
 * reported at once, naming the variable, so a bad deployment fails before it serves a request.
 */
import { isIP } from 'node:net';
import { availableParallelism } from 'node:os';

export type Dialect = 'sqlite' | 'postgres';

/** A postgres:// or postgresql:// URL selects PostgreSQL; anything else is a SQLite file path. */
export const dialectOf = (url: string): Dialect => (/^postgres(ql)?:\/\//i.test(url) ? 'postgres' : 'sqlite');

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

export interface Argon2Params {
  /** Memory cost in KiB. */
  readonly memoryCost: number;
  readonly timeCost: number;
  readonly parallelism: number;
}

export interface Config {
  readonly port: number;
  readonly host: string;
  /** The exact issuer identifier clients use (RFC 8414 §2), without a trailing slash. */
  readonly issuer: string;
  /** A SQLite file path, or a postgres:// URL. */
  readonly databaseUrl: string;
  /** Connections per instance when on PostgreSQL. */
  readonly databasePoolSize: number;
  readonly keysDir: string;
  /** Server default access-token lifetime in seconds. */
  readonly accessTokenTtl: number;
  /** Upper bound for any client's access-token lifetime, in seconds. */
  readonly accessTokenMaxTtl: number;
  /** Clock skew tolerated when judging a token's exp and iat at introspection, in seconds. */
  readonly clockLeeway: number;
  /** RSA modulus length of new signing keys. */
  readonly keySize: 2048 | 3072 | 4096;
  /** Days between automatic key rotations; 0: only when an operator rotates. */
  readonly keyRotationDays: number;
  /** Seconds between re-reads of KEYS_DIR, so changes made elsewhere arrive without a restart. */
  readonly keyReloadInterval: number;
  /** Seconds gateways may cache the JWKS (Cache-Control max-age). */
  readonly jwksMaxAge: number;
  readonly argon2: Argon2Params;
  /** libuv's threads, which sign tokens and run argon2 (set by main.cts before the pool starts). */
  readonly threadPoolSize: number;
  /** argon2 verifications running at once, and waiting; beyond both, 503 at once. */
  readonly argon2Limits: { readonly concurrency: number; readonly queue: number };
  /** Seconds a verified client secret skips argon2 (0: never). */
  readonly credentialCacheTtl: number;
  /** Most verified secrets remembered at once. */
  readonly credentialCacheSize: number;
  /** Most verified access tokens introspection remembers at once; 0 verifies every time. */
  readonly verifiedTokenCacheSize: number;
  /** Seconds between checks for client changes made by another process; they apply within this. */
  readonly clientCacheTtl: number;
  /** Abuse limits (limits/): failed authentications before back-off, and tokens per minute. */
  readonly limits: {
    readonly authFailuresPerClient: number;
    readonly authFailuresPerAddress: number;
    /** Seconds after which old failures are forgotten. */
    readonly authFailureWindow: number;
    readonly authBackoffMaxClient: number;
    readonly authBackoffMaxAddress: number;
    /** Leading bits of an IPv6 address counted as one address by the back-offs (128: each its own). */
    readonly authIpv6Prefix: number;
    /** Tokens per minute per client unless the client sets its own; 0: no limit. */
    readonly tokenRateLimit: number;
  };
  /** Browser origins allowed to call the token endpoint (CORS); empty: none. */
  readonly tokenCorsOrigins: readonly string[];
  /** Largest admin request body, in bytes. */
  readonly adminBodyLimit: number;
  /** Create and print one admin client on first start with an empty database. */
  readonly bootstrapAdmin: boolean;
  readonly logLevel: LogLevel;
  /** Trust X-Forwarded-* headers (only behind a reverse proxy that sets them). */
  readonly trustProxy: boolean;
  /** Days audit rows are kept; older ones are pruned hourly. 0: kept forever. */
  readonly auditRetentionDays: number;
  /** When set, /metrics is served on this port (bound to HOST) and not on PORT. */
  readonly metricsPort: number | undefined;
  /** A client_id label on the token counter, for authenticated clients only; needs METRICS_PORT. */
  readonly metricsClientLabels: boolean;
}

export class ConfigError extends Error {
  readonly code = 'ERR_CONFIG';
  constructor(readonly problems: readonly string[]) {
    super(`invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigError';
  }
}

const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

// OWASP Password Storage Cheat Sheet minimum for argon2id: m=19 MiB, t=2, p=1.
export const ARGON2_DEFAULTS: Argon2Params = { memoryCost: 19_456, timeCost: 2, parallelism: 1 };

type Env = Readonly<Record<string, string | undefined>>;

/** A thread per core but one, for the event loop, and at most libuv's 4; main.cts applies the same rule. */
export const defaultThreadPoolSize = (): number => Math.min(4, Math.max(1, availableParallelism() - 1));

/** Reads and validates the environment once; the result is frozen. Throws ConfigError. */
export function loadConfig(env: Env = process.env): Config {
  const problems: string[] = [];

  const int = (name: string, fallback: number, min: number, max: number): number => {
    const raw = env[name];
    if (raw === undefined || raw === '') return fallback;
    if (!/^\d+$/.test(raw)) {
      problems.push(`${name} must be a whole number, got ${JSON.stringify(raw)}`);
      return fallback;
    }
    const value = Number(raw);
    if (value < min || value > max) {
      problems.push(`${name} must be between ${min} and ${max}, got ${value}`);
      return fallback;
    }
    return value;
  };

  const port = int('PORT', 3000, 0, 65_535);
  const host = env.HOST || '127.0.0.1';
  // A malformed value is named here with the others; one that is well formed but does not resolve
  // to this machine is named when the server fails to listen (server.ts).
  if (isIP(host) === 0 && !HOSTNAME.test(host)) problems.push(`HOST must be an IP address or a host name, got ${JSON.stringify(host)}`);
  const accessTokenMaxTtl = int('ACCESS_TOKEN_MAX_TTL', 86_400, 60, 31_536_000);
  const accessTokenTtl = int('ACCESS_TOKEN_TTL', 3600, 60, 31_536_000);
  if (accessTokenTtl > accessTokenMaxTtl) {
    problems.push(`ACCESS_TOKEN_TTL (${accessTokenTtl}) must not exceed ACCESS_TOKEN_MAX_TTL (${accessTokenMaxTtl})`);
  }

  const issuer = parseIssuer(env.ISSUER || `http://localhost:${port}`, problems);

  const databaseUrl = env.DATABASE_URL || 'data/tessera.db';
  if (dialectOf(databaseUrl) === 'postgres') {
    // Checked here so a typo fails at start-up with a message, not at the first query.
    if (!URL.canParse(databaseUrl)) problems.push('DATABASE_URL is not a valid postgres:// URL');
  } else if (databaseUrl === ':memory:' || /^file:.*memory/i.test(databaseUrl)) {
    problems.push('DATABASE_URL must be a SQLite file path: an in-memory database would lose every client and audit row');
  } else if (/^\s|\s$/.test(databaseUrl) || /^(postgres|[a-z][a-z0-9+.-]*:\/)/i.test(databaseUrl) || /^(host|hostaddr|port|dbname|user|password|service|sslmode)\s*=/i.test(databaseUrl)) {
    // A URL of any other form (a mistyped postgres:/, file:///, mysql://), a libpq "host=… password=…"
    // string or a value padded with spaces would otherwise be taken for a file name: the server would
    // start on a new, empty database, under a name that may hold a password.
    problems.push('DATABASE_URL must be a SQLite file path (e.g. /var/lib/tessera/tessera.db) or a postgres:// URL');
  }

  const logLevel = (env.LOG_LEVEL || 'info') as LogLevel;
  if (!LOG_LEVELS.includes(logLevel)) {
    problems.push(`LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(env.LOG_LEVEL)}`);
  }

  const jwksMaxAge = int('JWKS_MAX_AGE', 300, 0, 86_400);
  const clockLeeway = int('CLOCK_LEEWAY', 10, 0, 300);
  const keySize = int('KEY_SIZE', 2048, 2048, 4096);
  if (![2048, 3072, 4096].includes(keySize)) problems.push(`KEY_SIZE must be 2048, 3072 or 4096, got ${keySize}`);
  const keyRotationDays = int('KEY_ROTATION_DAYS', 0, 0, 3650);
  const keyReloadInterval = int('KEY_RELOAD_INTERVAL', 5, 1, 300);
  // libuv's own bounds: it clamps to 1..1024.
  const threadPoolSize = int('UV_THREADPOOL_SIZE', defaultThreadPoolSize(), 1, 1024);
  // argon2 leaves signing a pool thread when there is more than one, and never runs on more
  // threads than there are cores; more at once would only wait inside libuv, out of ARGON2_QUEUE's sight.
  const argon2Limits = {
    concurrency: int('ARGON2_CONCURRENCY', Math.max(1, Math.min(threadPoolSize - 1, availableParallelism())), 1, 256),
    queue: int('ARGON2_QUEUE', 32, 0, 100_000),
  };
  const credentialCacheTtl = int('CREDENTIAL_CACHE_TTL', 300, 0, 86_400);
  const credentialCacheSize = int('CREDENTIAL_CACHE_SIZE', 10_000, 1, 10_000_000);
  // An entry is a digest and the claims, a few hundred bytes: a million is already hundreds of MB.
  const verifiedTokenCacheSize = int('VERIFIED_TOKEN_CACHE_SIZE', 10_000, 0, 1_000_000);
  const clientCacheTtl = int('CLIENT_CACHE_TTL', 1, 0, 60);
  const trustProxy = parseBoolean('TRUST_PROXY', env.TRUST_PROXY, false, problems);
  const bootstrapAdmin = parseBoolean('TESSERA_BOOTSTRAP_ADMIN', env.TESSERA_BOOTSTRAP_ADMIN, true, problems);
  const adminBodyLimit = int('ADMIN_BODY_LIMIT', 65_536, 1024, 10_485_760);
  const databasePoolSize = int('DATABASE_POOL_SIZE', 10, 2, 1000);
  const auditRetentionDays = int('AUDIT_RETENTION_DAYS', 0, 0, 36_500);
  const retentionProblem = auditRetentionTooShort(auditRetentionDays, accessTokenMaxTtl, clockLeeway);
  if (auditRetentionDays > 0 && retentionProblem) problems.push(`AUDIT_RETENTION_DAYS ${retentionProblem}`);
  const metricsPort = env.METRICS_PORT ? int('METRICS_PORT', 0, 1, 65_535) : undefined;
  if (metricsPort !== undefined && metricsPort === port) problems.push(`METRICS_PORT must differ from PORT (${port})`);
  const metricsClientLabels = parseBoolean('METRICS_CLIENT_LABELS', env.METRICS_CLIENT_LABELS, false, problems);
  // Labels name the clients that exist: not for a port the whole world can read.
  if (metricsClientLabels && metricsPort === undefined) problems.push('METRICS_CLIENT_LABELS=true requires METRICS_PORT, so client ids are not published on the public port');
  const tokenCorsOrigins = (env.TOKEN_CORS_ORIGINS ?? '').split(',').map((o) => o.trim()).filter(Boolean);
  for (const origin of tokenCorsOrigins) {
    if (URL.parse(origin)?.origin !== origin) problems.push(`TOKEN_CORS_ORIGINS must list origins like https://app.example.com, got ${JSON.stringify(redactCredentials(origin))}`);
  }
  const limits = {
    authFailuresPerClient: int('AUTH_FAILURES_PER_CLIENT', 5, 1, 1_000_000),
    authFailuresPerAddress: int('AUTH_FAILURES_PER_ADDRESS', 20, 1, 1_000_000),
    authFailureWindow: int('AUTH_FAILURE_WINDOW', 900, 1, 86_400),
    authBackoffMaxClient: int('AUTH_BACKOFF_MAX_CLIENT', 60, 1, 86_400),
    authBackoffMaxAddress: int('AUTH_BACKOFF_MAX_ADDRESS', 900, 1, 86_400),
    authIpv6Prefix: int('AUTH_IPV6_PREFIX', 128, 32, 128),
    tokenRateLimit: int('TOKEN_RATE_LIMIT', 300, 0, 1_000_000),
  };

  const argon2: Argon2Params = {
    memoryCost: int('ARGON2_MEMORY_KIB', ARGON2_DEFAULTS.memoryCost, 8_192, 4_194_304),
    timeCost: int('ARGON2_TIME_COST', ARGON2_DEFAULTS.timeCost, 1, 100),
    parallelism: int('ARGON2_PARALLELISM', ARGON2_DEFAULTS.parallelism, 1, 64),
  };

  if (problems.length > 0) throw new ConfigError(problems);

  return Object.freeze({
    port,
    host,
    issuer,
    databaseUrl,
    databasePoolSize,
    keysDir: env.KEYS_DIR || 'keys',
    accessTokenTtl,
    accessTokenMaxTtl,
    jwksMaxAge,
    keySize: keySize as Config['keySize'],
    keyRotationDays,
    keyReloadInterval,
    clockLeeway,
    argon2: Object.freeze(argon2),
    threadPoolSize,
    argon2Limits: Object.freeze(argon2Limits),
    credentialCacheTtl,
    credentialCacheSize,
    verifiedTokenCacheSize,
    clientCacheTtl,
    limits: Object.freeze(limits),
    tokenCorsOrigins: Object.freeze(tokenCorsOrigins),
    adminBodyLimit,
    bootstrapAdmin,
    logLevel,
    trustProxy,
    auditRetentionDays,
    metricsPort,
    metricsClientLabels,
  });
}

/**
 * Why keeping audit events `days` days is too short, or undefined. Tokens are active up to
 * ACCESS_TOKEN_MAX_TTL + CLOCK_LEEWAY, and two things read the log for that long: revoking a token
 * by jti (its token.issued row names the client) and reserving a deleted client's id (its
 * client.deleted row).
 */
export function auditRetentionTooShort(days: number, accessTokenMaxTtl: number, clockLeeway: number): string | undefined {
  const least = Math.ceil((accessTokenMaxTtl + clockLeeway) / 86_400);
  if (days >= least) return undefined;
  return `must be at least ${least} (ACCESS_TOKEN_MAX_TTL ${accessTokenMaxTtl} s + CLOCK_LEEWAY ${clockLeeway} s): revoking a token by jti and reserving a deleted client's id read the audit log for as long as a token can be active`;
}

// Host names as RFC 1123 allows them (a fully qualified one may end with a dot): nothing the resolver
// would reject before even asking.
const HOSTNAME = /^(?=.{1,254}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*\.?$/i;

const SECRET_PARAMETER = /pass|secret|token|credential/i;

/**
 * `text` with the credentials in any URL it holds masked, for showing configuration values and
 * problems: the password of `user:password@` (→ `user:****@`) and the value of query parameters
 * that carry one (`?password=`, `sslpassword=`, …; libpq and pg read those too).
 */
export function redactCredentials(text: string): string {
  return text
    .replace(/(\b[a-z][a-z0-9+.-]*:\/\/[^\s/?#@:]*:)[^\r\n/?#]*@/gi, '$1****@')
    .replace(/([?&])([^=&#\s"]*)=[^&#\s"]*/g, (all, separator: string, name: string) => {
      let decoded = name;
      try {
        decoded = decodeURIComponent(name.replace(/\+/g, ' '));
      } catch {
        // A malformed escape: judge the name as written.
      }
      return SECRET_PARAMETER.test(decoded) ? `${separator}${name}=****` : all;
    });
}

function parseBoolean(name: string, raw: string | undefined, fallback: boolean, problems: string[]): boolean {
  if (raw === undefined || raw === '') return fallback;
  if (raw === 'true' || raw === '1') return true;
  if (raw === 'false' || raw === '0') return false;
  problems.push(`${name} must be true or false, got ${JSON.stringify(raw)}`);
  return fallback;
}

/**
 * RFC 8414 §2: the issuer is an https URL with no query or fragment. Plain http is accepted
 * only for loopback hosts, so a local trial works and a production mistake does not.
 */
function parseIssuer(raw: string, problems: string[]): string {
  const shown = JSON.stringify(redactCredentials(raw));
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    problems.push(`ISSUER must be an absolute URL, got ${shown}`);
    return raw;
  }
  if (url.search || url.hash || raw.includes('?') || raw.includes('#')) {
    problems.push('ISSUER must not have a query or fragment (RFC 8414 §2)');
  }
  if (url.pathname !== '/') {
    // Endpoints and the RFC 8414 well-known documents are served at the root of the origin.
    problems.push(`ISSUER must be an origin without a path, e.g. https://auth.example.com, got ${shown}`);
  }
  if (url.username || url.password) {
    problems.push('ISSUER must not contain credentials');
  }
  const loopback = url.hostname === 'localhost' || (isIP(url.hostname.replace(/^\[|\]$/g, '')) !== 0 && /^(127\.|\[::1\]$)/.test(url.hostname));
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && loopback)) {
    problems.push(`ISSUER must use https (http is allowed only for localhost), got ${shown}`);
  }
  return url.href.endsWith('/') ? url.href.slice(0, -1) : url.href;
}
