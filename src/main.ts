/**
 * Server entry: loadConfig → openDatabase → migrate → loadKeystore → createApp → listen.
 * SIGTERM/SIGINT stop accepting, let in-flight requests finish, close the database, and exit.
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http';

import { bootstrapAdmin } from './admin/bootstrap.js';
import { createApp } from './app.js';
import { AuditLog } from './audit/audit-log.js';
import { AuditWriterThread } from './audit/audit-writer.js';
import { clientRecords } from './clients/client-records.js';
import { Limits } from './limits/index.js';
import { SecretHasher } from './clients/secret.js';
import { systemClock } from './clock.js';
import { ConfigError, loadConfig } from './config.js';
import { openDatabase } from './db/database.js';
import { migrateToLatest } from './db/migrate.js';
import { startRevocationPruner } from './introspection/prune.js';
import { KeyManager, auditKeyEvents, keyPolicy } from './keys/key-manager.js';
import { KeystoreError } from './keys/keystore.js';
import { createLogger } from './log.js';

const SHUTDOWN_GRACE_MS = 10_000;

async function main(): Promise<void> {
  const config = loadConfig();
  const log = createLogger(config.logLevel);
  const db = openDatabase(config.databasePath);
  const applied = await migrateToLatest(db);
  if (applied.length > 0) log.info({ migrations: applied }, 'database migrated');
  // The audit commits (and their fsyncs) run on their own thread, off the event loop.
  const auditWriter = new AuditWriterThread(config.databasePath);
  const auditLog = new AuditLog(auditWriter.write, log, systemClock);
  const keys = await KeyManager.open(keyPolicy(config, systemClock), auditKeyEvents(auditLog), log);
  const stopKeys = keys.start();
  const hasher = new SecretHasher(config.argon2, config.argon2Limits);
  const records = clientRecords(db, config, systemClock);
  const limits = new Limits(config.limits, systemClock, auditLog);
  const stopRefusals = limits.refusals.start(10_000, (err) => log.error({ err }, 'limit summary not audited'));
  if (config.bootstrapAdmin) {
    const settingLimits = { maxAccessTokenTtl: config.accessTokenMaxTtl };
    const admin = await bootstrapAdmin({ db, hasher, clock: systemClock, limits: settingLimits, auditLog, actor: 'bootstrap', clientChanged: (id) => records.invalidate(id) }, config.issuer);
    if (admin) printBootstrapAdmin(admin.client.clientId, admin.clientSecret, config.issuer);
  }

  const stopPruner = startRevocationPruner(db, systemClock, config.clockLeeway, log);
  log.info({ kid: keys.current.active.kid }, 'signing key loaded');
  const app = createApp(config, { db, records, limits, auditLog, keys, hasher, log, clock: systemClock });
  const server: Server = app.listen(config.port, config.host);
  // Slow or idle clients must not hold sockets open indefinitely.
  server.headersTimeout = 10_000;
  server.requestTimeout = 15_000;
  server.keepAliveTimeout = 5_000;
  server.once('listening', () => log.info({ issuer: config.issuer, host: config.host, port: config.port }, 'listening'));

  // Once stopping, every answer closes its connection, and connections that go idle are closed: a
  // client that keeps sending on a keep-alive connection would otherwise hold server.close() open
  // until the grace period runs out.
  let stopping = false;
  server.on('request', (_req: IncomingMessage, res: ServerResponse) => {
    if (stopping) res.setHeader('Connection', 'close');
  });

  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down');
    const force = setTimeout(() => process.exit(1), SHUTDOWN_GRACE_MS).unref();
    stopPruner();
    server.close(() => {
      void Promise.all([stopKeys(), stopRefusals().then(() => auditLog.flush())])
        .then(() => Promise.all([auditWriter.close(), db.destroy()]))
        .then(() => {
          clearTimeout(force);
          log.info('stopped');
          process.exit(0);
        });
    });
    server.closeIdleConnections();
    setInterval(() => server.closeIdleConnections(), 100).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
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
  const known = err instanceof ConfigError || err instanceof KeystoreError;
  process.stderr.write(`tessera: ${known ? err.message : String((err as Error)?.stack ?? err)}\n`);
  process.exit(1);
});
