/**
 * createApp(config, deps): the one koa app. No I/O here: server.ts (or a test) opens the database and
 * loads the keys, then passes them in.
 */
import Koa from 'koa';

import { adminRoutes } from './admin/index.js';
import type { AuditLog } from './audit/audit-log.js';
import type { ClientRecords } from './clients/client-records.js';
import type { LastUse } from './clients/last-use.js';
import type { SecretHasher } from './clients/secret.js';
import { VerifiedCredentialCache } from './clients/verified-credentials.js';
import type { Clock } from './clock.js';
import type { Config } from './config.js';
import type { Db } from './db/database.js';
import { serveJwks } from './discovery/jwks.js';
import { DISCOVERY_PATHS, INTROSPECTION_PATH, JWKS_PATH, REVOCATION_PATH, TOKEN_PATH, serveMetadata } from './discovery/metadata.js';
import { noStore, tokenCors } from './http/headers.js';
import { logConnectionErrors, requestContext } from './http/request-context.js';
import { routes } from './http/routes.js';
import { introspectEndpoint, revokeEndpoint } from './introspection/index.js';
import { createTokenInspector } from './introspection/inspect-token.js';
import { createTokenVerifier } from './introspection/verify-token.js';
import type { KeyManager } from './keys/key-manager.js';
import type { Limits } from './limits/index.js';
import type { Keystore } from './keys/keystore.js';
import type { Logger } from './log.js';
import { HEALTH_PATH, READY_PATH, healthz, readyz } from './ops/health.js';
import { METRICS_PATH, serveMetrics, type Metrics } from './ops/metrics.js';
import { createTokenMinter } from './provider/mint-token.js';
import { createAuthenticator } from './token/authenticate-client.js';
import { tokenEndpoint } from './token/index.js';

export interface AppDeps {
  readonly db: Db;
  /** Shared with the client service, whose changes invalidate it. */
  readonly records: ClientRecords;
  /** What the client service calls after a change (client-changes.ts). */
  readonly clientChanged: (clientId: string) => void | Promise<void>;
  readonly limits: Limits;
  readonly auditLog: AuditLog;
  readonly keys: KeyManager;
  readonly hasher: SecretHasher;
  /** Where secrets' last use is recorded (clients/last-use.ts). */
  readonly lastUse: LastUse;
  readonly log: Logger;
  readonly clock: Clock;
  /** This app's registry; served at /metrics here unless METRICS_PORT serves it (server.ts). */
  readonly metrics: Metrics;
}

export function createApp(config: Config, deps: AppDeps): Koa {
  const { db, records, clientChanged, limits, auditLog, keys, hasher, lastUse, log, clock, metrics } = deps;

  const verified = new VerifiedCredentialCache({ ttlMs: config.credentialCacheTtl * 1000, maxEntries: config.credentialCacheSize, clock });
  metrics.watch({ hasher, auditLog, verified, keys });
  const authenticate = createAuthenticator({ db, records, limits, hasher, verified, lastUse, clock });
  // oidc-provider's keystore is fixed when it is built, so a new active key means a new minter. A
  // request takes the current one when it signs (token/index.ts withholds a token whose key was
  // revoked while it was being signed).
  const buildMinter = (keystore: Keystore) => createTokenMinter({ issuer: config.issuer, keystore, clientInstances: config.credentialCacheSize });
  let minter = buildMinter(keys.current);
  keys.onChange((keystore) => {
    if (keystore.active.kid !== minter.kid) minter = buildMinter(keystore);
  });
  const cors = tokenCors(config.tokenCorsOrigins);
  const token = tokenEndpoint({
    authenticate,
    rateLimits: limits,
    limits: { defaultTtl: config.accessTokenTtl, maxTtl: config.accessTokenMaxTtl },
    minter: () => minter,
    keys,
    clock,
    auditLog,
    cors: cors.response,
    metrics,
    log,
    issuer: config.issuer,
  });
  const verify = createTokenVerifier({
    keys,
    issuer: config.issuer,
    clock,
    leeway: config.clockLeeway,
    maxTokenAge: config.accessTokenMaxTtl,
    cacheSize: config.verifiedTokenCacheSize,
  });
  const inspect = createTokenInspector(db, verify);
  const introspection = { db, authenticate, limits, inspect, auditLog, clock, issuer: config.issuer, metrics };
  const admin = adminRoutes({
    db,
    service: { db, hasher, clock, limits: { maxAccessTokenTtl: config.accessTokenMaxTtl }, auditLog, clientChanged },
    inspect,
    auditLog,
    refusals: limits.refusals,
    keys,
    clock,
    issuer: config.issuer,
    bodyLimit: config.adminBodyLimit,
  });
  const metadata = serveMetadata(config.issuer);

  // Behind a proxy, the address is the one the proxy itself saw (the last X-Forwarded-For entry):
  // earlier entries come from the caller, who could otherwise dodge the per-address limits.
  const app = new Koa({ proxy: config.trustProxy, maxIpsCount: 1 });
  app.on('error', logConnectionErrors(log));
  // Probes and scrapes come every few seconds: their access lines only at debug level (a failing
  // readiness check logs its own warning).
  app.use(requestContext(log, [HEALTH_PATH, READY_PATH, METRICS_PATH]));
  app.use(
    routes({
      [TOKEN_PATH]: { POST: token, OPTIONS: [cors.preflight] },
      [INTROSPECTION_PATH]: { POST: [noStore, introspectEndpoint(introspection)] },
      [REVOCATION_PATH]: { POST: [noStore, revokeEndpoint(introspection)] },
      [JWKS_PATH]: { GET: [serveJwks(keys, config.jwksMaxAge)] },
      ...Object.fromEntries(DISCOVERY_PATHS.map((path) => [path, { GET: [metadata] }])),
      // Probes and metrics: not audited, not rate-limited. With METRICS_PORT, /metrics is served there only.
      [HEALTH_PATH]: { GET: [healthz] },
      [READY_PATH]: { GET: [readyz({ db, keys, auditLog, log, clock })] },
      ...(config.metricsPort === undefined ? { [METRICS_PATH]: { GET: [serveMetrics(metrics)] } } : {}),
      ...admin,
    }),
  );
  return app;
}
