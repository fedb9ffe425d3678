/**
 * An in-process Tessera for supertest: its own temporary database and key directory per call,
 * a controllable clock, a hasher that counts argon2 work, and a log captured in memory.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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
import { createClient, rotateSecret, type ClientServiceDeps } from '../../src/clients/client.service.js';
import type { Client } from '../../src/clients/client.js';
import { SecretHasher } from '../../src/clients/secret.js';
import type { Clock } from '../../src/clock.js';
import { loadConfig, type Config } from '../../src/config.js';
import { openDatabase, type Db } from '../../src/db/database.js';
import { migrateToLatest } from '../../src/db/migrate.js';
import { KeyManager, auditKeyEvents, keyPolicy } from '../../src/keys/key-manager.js';
import type { Keystore } from '../../src/keys/keystore.js';
import { Limits } from '../../src/limits/index.js';
import { createLogger } from '../../src/log.js';

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
 * Wall-clock time plus an offset the test controls. It moves like the clock oidc-provider stamps
 * iat and exp with, so "now" means the same thing on both sides unless a test shifts it.
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
  /** Stops time where it is, for exact boundaries (tokens minted by the test, not the engine). */
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
  readonly clock: TestClock;
  /** Every log line written so far, parsed. */
  readonly logLines: Record<string, unknown>[];
  readonly dir: string;
  /** The same client operations the CLI uses (disable, delete, revoke-tokens, …). */
  readonly service: ClientServiceDeps;
  readonly limits: Limits;
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
  const config = loadConfig({ DATABASE_URL: join(dir, 'tessera.db'), KEYS_DIR: join(dir, 'keys'), ISSUER, LOG_LEVEL: 'info', ...noLimits, ...env });
  const logLines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n').filter(Boolean)) logLines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  const log = createLogger(config.logLevel, sink);
  const db = openDatabase(config.databasePath);
  await migrateToLatest(db);
  const clock = new TestClock();
  const auditLog = new AuditLog(writeAuditRows(db), log, clock);
  const keys = await KeyManager.open(keyPolicy(config, clock), auditKeyEvents(auditLog), log);
  const hasher = new CountingHasher(config.argon2, config.argon2Limits);
  const records = clientRecords(db, config, clock);
  const limits = new Limits(config.limits, clock, auditLog);
  const app = createApp(config, { db, records, limits, auditLog, keys, hasher, log, clock });
  const deps: ClientServiceDeps = {
    db,
    hasher,
    clock,
    limits: { maxAccessTokenTtl: config.accessTokenMaxTtl },
    auditLog,
    actor: 'test',
    clientChanged: (clientId) => records.invalidate(clientId),
  };

  return {
    config,
    app,
    request: supertest(app.callback()),
    db,
    keys,
    get keystore() {
      return keys.current;
    },
    hasher,
    clock,
    logLines,
    dir,
    service: deps,
    limits,
    async createClient(input) {
      const { client, clientSecret } = await createClient(deps, input);
      return { client, secret: clientSecret };
    },
    rotateSecret: (clientId, previousSecretExpiresIn) => rotateSecret(deps, clientId, previousSecretExpiresIn),
    auditRows: (typePrefix = '') =>
      db.selectFrom('audit_events').selectAll().where('type', 'like', `${typePrefix}%`).orderBy('id').execute(),
    async close() {
      await db.destroy();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The same secret with its last character changed: well-formed, and certainly wrong. */
export const tamper = (secret: string): string => `${secret.slice(0, -1)}${secret.endsWith('A') ? 'B' : 'A'}`;

export const basic = (id: string, secret: string): string =>
  `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`;
