/**
 * An in-process Tessera for supertest: its own temporary database and key directory per call,
 * a controllable clock, a hasher that counts argon2 work, and a log captured in memory.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RequestListener, ServerResponse } from 'node:http';
import { Writable } from 'node:stream';

import { randomUUID, type KeyObject } from 'node:crypto';

import { SignJWT, importJWK, type CryptoKey } from 'jose';
import type Koa from 'koa';
import supertest from 'supertest';

import { createApp } from '../../src/app.js';
import { AuditLog } from '../../src/audit/audit-log.js';
import { writeAuditRows } from '../../src/audit/audit-writer.js';
import type { AuditEventRow } from '../../src/audit/audit-event.table.js';
import { clientRecords } from '../../src/clients/client-records.js';
import type { ClientSettingsInput } from '../../src/clients/client-settings.js';
import { clientChangeAnnouncer } from '../../src/clients/client-changes.js';
import { LastUse, writeLastUse } from '../../src/clients/last-use.js';
import { createClient, rotateSecret, type ClientServiceDeps } from '../../src/clients/client.service.js';
import type { Client } from '../../src/clients/client.js';
import { SecretHasher } from '../../src/clients/secret.js';
import type { Clock } from '../../src/clock.js';
import { loadConfig, type Config } from '../../src/config.js';
import { openDatabase, type Db } from '../../src/db/database.js';
import { migrateToLatest } from '../../src/db/migrate.js';
import { KeyManager, auditKeyEvents, keyPolicy } from '../../src/keys/key-manager.js';
import type { Keystore } from '../../src/keys/keystore.js';
import { serverLimits, type Limits } from '../../src/limits/index.js';
import { createLogger } from '../../src/log.js';
import { Metrics } from '../../src/ops/metrics.js';
import { createTestDatabase } from './database.js';

/** Counts argon2 verifications, so tests can prove every failure pays the same work. */
export class CountingHasher extends SecretHasher {
  verifies = 0;
  decoys = 0;
  override verify(hash: string, presented: string): Promise<boolean> {
    this.verifies += 1;
    return super.verify(hash, presented);
  }
  override verifyDecoy(presented: string): Promise<false> {
    this.decoys += 1;
    return super.verifyDecoy(presented);
  }
  reset(): void {
    this.verifies = 0;
    this.decoys = 0;
  }
}

/**
 * Wall-clock time plus an offset the test controls: the server's clock, which stamps iat and exp
 * and judges them at introspection.
 */
export class TestClock implements Clock {
  #offsetMs = 0;
  constructor(private base?: number) {}
  now(): number {
    return (this.base ?? Date.now()) + this.#offsetMs;
  }
  advance(seconds: number): void {
    this.#offsetMs += seconds * 1000;
  }
  /** Stops time where it is, for exact boundaries. */
  freeze(): void {
    this.base = this.now();
    this.#offsetMs = 0;
  }
  /** Back to running wall-clock time. */
  sync(): void {
    this.base = undefined;
    this.#offsetMs = 0;
  }
}

/** Signs an access token with the server's active key (or another), for exact iat/exp/iss cases. */
export async function mint(
  h: Harness,
  claims: Record<string, unknown>,
  options: { header?: Record<string, unknown>; key?: CryptoKey | KeyObject | Uint8Array; alg?: string } = {},
): Promise<string> {
  const now = Math.floor(h.clock.now() / 1000);
  const key = options.key ?? (await importJWK(h.keystore.active.privateJwk!, 'RS256'));
  return new SignJWT({ iss: ISSUER, iat: now, exp: now + 600, jti: randomUUID(), ...claims })
    .setProtectedHeader({ alg: options.alg ?? 'RS256', typ: 'at+jwt', kid: h.keystore.active.kid, ...options.header })
    .sign(key);
}

export interface Harness {
  readonly config: Config;
  readonly app: Koa;
  readonly request: ReturnType<typeof supertest>;
  readonly db: Db;
  readonly keys: KeyManager;
  /** The current key snapshot. */
  readonly keystore: Keystore;
  readonly hasher: CountingHasher;
  /** Secrets' last use, written a second later in a batch: flush() to write it now. */
  readonly lastUse: LastUse;
  readonly clock: TestClock;
  /** Every log line written so far, parsed. */
  readonly logLines: Record<string, unknown>[];
  readonly dir: string;
  /** The same client operations the CLI uses (disable, delete, revoke-tokens, …). */
  readonly service: ClientServiceDeps;
  readonly limits: Limits;
  /** The app's metrics registry (served at /metrics unless METRICS_PORT is set). */
  readonly metrics: Metrics;
  createClient(input: ClientSettingsInput): Promise<{ client: Client; secret: string }>;
  rotateSecret(clientId: string, previousSecretExpiresIn: number): Promise<string>;
  /** Audit rows in order, optionally only those whose type starts with `typePrefix`. */
  auditRows(typePrefix?: string): Promise<AuditEventRow[]>;
  close(): Promise<void>;
}

export const ISSUER = 'http://localhost:3000';

export async function startHarness(env: Record<string, string> = {}): Promise<Harness> {
  const dir = mkdtempSync(join(tmpdir(), 'tessera-test-'));
  // Every request in a test comes from one address: the abuse limits are off unless a test sets them.
  const noLimits = { AUTH_FAILURES_PER_ADDRESS: '1000000', AUTH_FAILURES_PER_CLIENT: '1000000', TOKEN_RATE_LIMIT: '0' };
  const database = await createTestDatabase(dir);
  const config = loadConfig({ DATABASE_URL: database.url, KEYS_DIR: join(dir, 'keys'), ISSUER, LOG_LEVEL: 'info', ...noLimits, ...env });
  const logLines: Record<string, unknown>[] = [];
  const sensitive = new Set<string>();
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n').filter(Boolean)) logLines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  const log = createLogger(config.logLevel, sink);
  const db = openDatabase(config.databaseUrl);
  await migrateToLatest(db);
  const clock = new TestClock();
  const auditLog = new AuditLog(writeAuditRows(db), log, clock);
  const keys = await KeyManager.open(keyPolicy(config, clock), auditKeyEvents(auditLog), log);
  const hasher = new CountingHasher(config.argon2, config.argon2Limits);
  const records = clientRecords(db, config, clock);
  const limits = serverLimits(config, db, clock, auditLog, log);
  // As server.ts wires it: the harness does not listen, so on PostgreSQL the announcement goes unheard.
  const clientChanged = clientChangeAnnouncer(config.databaseUrl, db, (clientId) => records.invalidate(clientId), log);
  const metrics = new Metrics(config);
  const lastUse = new LastUse(writeLastUse(db), (clientId) => records.invalidate(clientId), log);
  const app = createApp(config, { db, records, clientChanged, limits, auditLog, keys, hasher, lastUse, log, clock, metrics });
  const deps: ClientServiceDeps = {
    db,
    hasher,
    clock,
    limits: { maxAccessTokenTtl: config.accessTokenMaxTtl },
    auditLog,
    actor: 'test',
    clientChanged,
  };

  return {
    config,
    app,
    request: supertest(watchSecrets(app, sensitive)),
    db,
    keys,
    get keystore() {
      return keys.current;
    },
    hasher,
    lastUse,
    clock,
    logLines,
    dir,
    service: deps,
    limits,
    metrics,
    async createClient(input) {
      const { client, clientSecret } = await createClient(deps, input);
      sensitive.add(clientSecret);
      return { client, secret: clientSecret };
    },
    rotateSecret: async (clientId, previousSecretExpiresIn) => {
      const rotated = await rotateSecret(deps, clientId, previousSecretExpiresIn);
      sensitive.add(rotated);
      return rotated;
    },
    auditRows: (typePrefix = '') =>
      db.selectFrom('audit_events').selectAll().where('type', 'like', `${typePrefix}%`).orderBy('id').execute(),
    async close() {
      await lastUse.flush();
      // Nothing a test sent or received as a credential may be in a log line or an audit row.
      const hashes = await db.selectFrom('client_secrets').select('hash').execute();
      // (A test that broke the audit table on purpose leaves only the log lines to check.)
      const auditRows = await db.selectFrom('audit_events').selectAll().execute().catch(() => []);
      assertNothingLeaked([...sensitive, ...hashes.map((r) => r.hash)], [...logLines, ...auditRows]);
      await db.destroy();
      await database.drop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The same secret with its last character changed: well-formed, and certainly wrong. */
export const tamper = (secret: string): string => `${secret.slice(0, -1)}${secret.endsWith('A') ? 'B' : 'A'}`;

export const basic = (id: string, secret: string): string =>
  `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`;

// Shorter values (a test's deliberately wrong "x") would match innocent text.
const MIN_SENSITIVE_LENGTH = 12;

/**
 * The app's request handler, noting every credential that passes: Authorization header values
 * (and the secret inside a Basic one), and the access tokens and client secrets in responses.
 */
function watchSecrets(app: Koa, sensitive: Set<string>): RequestListener {
  const handle = app.callback();
  return (req, res): void => {
    const authorization = req.headers.authorization;
    if (authorization) {
      sensitive.add(authorization);
      const [scheme, value = ''] = authorization.split(' ');
      sensitive.add(value);
      if (scheme?.toLowerCase() === 'basic') {
        const decoded = Buffer.from(value, 'base64').toString('utf8');
        sensitive.add(decodeURIComponentSafe(decoded.slice(decoded.indexOf(':') + 1)));
      }
    }
    const chunks: Buffer[] = [];
    const end = res.end.bind(res) as (...args: unknown[]) => ServerResponse;
    const write = res.write.bind(res) as (...args: unknown[]) => boolean;
    res.write = ((chunk: unknown, ...rest: unknown[]) => {
      if (chunk) chunks.push(Buffer.from(chunk as string));
      return write(chunk, ...rest);
    }) as ServerResponse['write'];
    res.end = ((chunk?: unknown, ...rest: unknown[]) => {
      if (chunk && typeof chunk !== 'function') chunks.push(Buffer.from(chunk as string));
      for (const name of ['access_token', 'client_secret']) {
        const found = new RegExp(`"${name}":"([^"]+)"`).exec(Buffer.concat(chunks).toString('utf8'));
        if (found) sensitive.add(found[1]!);
      }
      return end(chunk, ...rest);
    }) as ServerResponse['end'];
    void handle(req, res);
  };
}

const decodeURIComponentSafe = (value: string): string => {
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
};

function assertNothingLeaked(sensitive: Iterable<string>, records: readonly unknown[]): void {
  const text = records.map((r) => JSON.stringify(r));
  for (const value of sensitive) {
    if (value.length < MIN_SENSITIVE_LENGTH) continue;
    const leak = text.find((line) => line.includes(value));
    if (leak !== undefined) throw new Error(`a credential reached the logs or the audit log: ${leak.slice(0, 300)}`);
  }
}
