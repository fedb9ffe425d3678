/**
 * The start-up sequence, run by main.cts: loadConfig → openDatabase → migrate → loadKeystore → createApp → listen.
 * SIGTERM/SIGINT stop accepting, let in-flight requests finish, close the database, and exit.
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http';

import { bootstrapAdmin } from './admin/bootstrap.js';
import { createApp } from './app.js';
import { AuditLog } from './audit/audit-log.js';
import { startAuditPruner } from './audit/audit-retention.js';
import { AuditWriterThread, writeAuditRows } from './audit/audit-writer.js';
import { clientChangeAnnouncer, clientChangeHandlers } from './clients/client-changes.js';
import { LastUse, writeLastUse } from './clients/last-use.js';
import { clientRecords } from './clients/client-records.js';
import { serverLimits } from './limits/index.js';
import { SecretHasher } from './clients/secret.js';
import { systemClock } from './clock.js';
import { ConfigError, dialectOf, loadConfig } from './config.js';
import { openDatabase } from './db/database.js';
import { MigrationError, migrateToLatest } from './db/migrate.js';
import { listen } from './db/notifications.js';
import { startRevocationPruner } from './introspection/prune.js';
import { KeyManager, auditKeyEvents, keyPolicy } from './keys/key-manager.js';
import { KeystoreError } from './keys/keystore.js';
import { createLogger } from './log.js';
import { Metrics, createMetricsApp } from './ops/metrics.js';

const SHUTDOWN_GRACE_MS = 10_000;
/** After the grace period, the time left to commit the audit log and close the database. */
const SHUTDOWN_CLEANUP_MS = 5_000;

/**
 * Until the server listens, a signal ends start-up at once. Without a handler Node would do so
 * itself, except as PID 1 (a container without an init), where an unhandled SIGTERM is ignored and
 * the orchestrator waits its whole grace period and kills. The key lock, if held, goes with the
 * process (keys/lock.ts).
 */
function exitDuringStartUp(signal: NodeJS.Signals): void {
  process.stderr.write(`tessera: ${signal} during start-up; exiting\n`);
  process.exit(signal === 'SIGINT' ? 130 : 143);
}

async function main(): Promise<void> {
  process.on('SIGTERM', exitDuringStartUp);
  process.on('SIGINT', exitDuringStartUp);
  const config = loadConfig();
  const log = createLogger(config.logLevel);
  const db = openDatabase(config.databaseUrl, { poolSize: config.databasePoolSize });
  const { applied, newer } = await migrateToLatest(db);
  if (applied.length > 0) log.info({ migrations: applied }, 'database migrated');
  if (newer.length > 0) log.warn({ migrations: newer }, 'the database schema is newer than this version; running on it');
  // SQLite's commits (and their fsyncs) run on their own thread, off the event loop; pg's are asynchronous anyway.
  const auditThread = dialectOf(config.databaseUrl) === 'sqlite' ? new AuditWriterThread(config.databaseUrl) : undefined;
  const auditLog = new AuditLog(auditThread?.write ?? writeAuditRows(db), log, systemClock);
  const keys = await KeyManager.open(keyPolicy(config, systemClock), auditKeyEvents(auditLog), log);
  const stopKeys = keys.start();
  const hasher = new SecretHasher(config.argon2, config.argon2Limits);
  const records = clientRecords(db, config, systemClock);
  const clientChanged = clientChangeAnnouncer(config.databaseUrl, db, (id) => records.invalidate(id), log);
  const lastUse = new LastUse(auditThread?.writeLastUse ?? writeLastUse(db), (id) => records.invalidate(id), log);
  const limits = serverLimits(config, db, systemClock, auditLog, log);
  const stopLimitPruning = limits.startPruning();
  const stopListening = await listen(config.databaseUrl, { ...clientChangeHandlers(records), ...limits.handlers() }, () => records.clear(), log);
  const stopRefusals = limits.refusals.start(10_000, (err) => log.error({ err }, 'limit summary not audited'));
  if (config.bootstrapAdmin) {
    const settingLimits = { maxAccessTokenTtl: config.accessTokenMaxTtl };
    const admin = await bootstrapAdmin({ db, hasher, clock: systemClock, limits: settingLimits, auditLog, actor: 'bootstrap', clientChanged }, config.issuer);
    if (admin) printBootstrapAdmin(admin.client.clientId, admin.clientSecret, config.issuer);
  }

  const stopPruner = startRevocationPruner(db, systemClock, config.clockLeeway, log);
  // AUDIT_RETENTION_DAYS > 0: audit rows older than that are deleted now and hourly.
  const stopAuditPruner = startAuditPruner(db, auditLog, systemClock, config.auditRetentionDays, log);
  log.info({ kid: keys.current.active.kid }, 'signing key loaded');
  const metrics = new Metrics(config);
  const app = createApp(config, { db, records, clientChanged, limits, auditLog, keys, hasher, lastUse, log, clock: systemClock, metrics });
  // METRICS_PORT: /metrics on its own port (same HOST), which operators can keep off the public network.
  const metricsServer = config.metricsPort === undefined ? undefined : createMetricsApp(metrics, log).listen(config.metricsPort, config.host);
  if (metricsServer) {
    exitOnListenError(metricsServer, `HOST ${config.host}, METRICS_PORT ${config.metricsPort}`);
    metricsServer.headersTimeout = 10_000;
    metricsServer.requestTimeout = 15_000;
    metricsServer.once('listening', () => log.info({ host: config.host, port: config.metricsPort }, 'metrics listening'));
  }
  const server: Server = app.listen(config.port, config.host);
  exitOnListenError(server, `HOST ${config.host}, PORT ${config.port}`);
  // Slow or idle clients must not hold sockets open indefinitely.
  server.headersTimeout = 10_000;
  server.requestTimeout = 15_000;
  server.keepAliveTimeout = 5_000;
  server.once('listening', () => log.info({ issuer: config.issuer, host: config.host, port: config.port }, 'listening'));

  // Once stopping, every answer closes its connection (those in flight at the signal too), and
  // connections that go idle are closed: a client that sends again on a connection the server is
  // closing gets a reset (a proxy, a 502), and one that keeps sending would hold server.close() open.
  let stopping = false;
  const unanswered = new Set<ServerResponse>();
  server.on('request', (_req: IncomingMessage, res: ServerResponse) => {
    if (stopping) res.setHeader('Connection', 'close');
    unanswered.add(res);
    res.once('close', () => unanswered.delete(res));
  });

  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down');
    for (const res of unanswered) if (!res.headersSent) res.setHeader('Connection', 'close');
    // A request still unfinished after the grace period (a client stalled in its body, say) is cut
    // off, and the shutdown goes on: the audit log is still committed and the database closed.
    const cutOff = setTimeout(() => {
      log.warn({ connections: unanswered.size }, 'grace period over; closing the connections left');
      server.closeAllConnections();
    }, SHUTDOWN_GRACE_MS).unref();
    const force = setTimeout(() => process.exit(1), SHUTDOWN_GRACE_MS + SHUTDOWN_CLEANUP_MS).unref();
    stopPruner();
    stopLimitPruning();
    // Scrapes are short and hold nothing: the metrics port simply stops answering.
    metricsServer?.close();
    metricsServer?.closeIdleConnections();
    server.close(() => {
      void Promise.all([stopKeys(), stopListening(), lastUse.flush(), Promise.all([stopRefusals(), stopAuditPruner()]).then(() => auditLog.flush())])
        .then(() => Promise.all([auditThread?.close(), db.destroy()]))
        .then(() => {
          clearTimeout(cutOff);
          clearTimeout(force);
          log.info('stopped');
          process.exit(0);
        })
        .catch((err: unknown) => {
          log.error({ err }, 'shutdown failed');
          process.exit(1);
        });
    });
    server.closeIdleConnections();
    setInterval(() => server.closeIdleConnections(), 100).unref();
  };
  process.off('SIGTERM', exitDuringStartUp);
  process.off('SIGINT', exitDuringStartUp);
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

/**
 * Until a server listens, its error (the port taken, a HOST that does not resolve or is not this
 * machine's) ends start-up with a line naming the settings, like a configuration problem, instead
 * of an unhandled 'error' event and its stack.
 */
function exitOnListenError(server: Server, settings: string): void {
  const fail = (err: NodeJS.ErrnoException) => {
    process.stderr.write(`tessera: cannot listen on ${settings}: ${err.code ?? err.message}\n`);
    process.exit(1);
  };
  server.once('error', fail);
  server.once('listening', () => server.off('error', fail));
}

/** Shown once, on the console only: this is the one moment the secret exists in plaintext. */
function printBootstrapAdmin(clientId: string, secret: string, issuer: string): void {
  process.stderr.write(
    [
      '',
      '================ Tessera bootstrap admin client (shown once) ================',
      `client_id:     ${clientId}`,
      `client_secret: ${secret}`,
      'Store the secret now; it cannot be shown again. Get an admin token with:',
      `  curl -u "$ID:$SECRET" -d grant_type=client_credentials -d audience=${issuer}/admin ${issuer}/oauth/token`,
      '==============================================================================',
      '',
    ].join('\n'),
  );
}

main().catch((err: unknown) => {
  // Start-up problems are for a human at a terminal: say what is wrong, without a stack trace.
  const known = err instanceof ConfigError || err instanceof KeystoreError || err instanceof MigrationError;
  process.stderr.write(`tessera: ${known ? err.message : String((err as Error)?.stack ?? err)}\n`);
  process.exit(1);
});
