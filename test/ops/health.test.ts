/**
 * GET /healthz (liveness) and GET /readyz (readiness): answers, failures naming their check without
 * leaking a cause, a bounded wait on a hung database or thread pool, and neither probe audited nor
 * rate-limited.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import Koa from 'koa';
import { sql } from 'kysely';
import supertest from 'supertest';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { migrations } from '../../migrations/index.js';
import { openDatabase, type Db } from '../../src/db/database.js';
import { KeystoreError } from '../../src/keys/keystore.js';
import { createLogger } from '../../src/log.js';
import { AUDIT_FAILURE_HOLD_MS, readyz } from '../../src/ops/health.js';
import { testDialect } from '../support/database.js';
import { basic, startHarness, type Harness } from '../support/harness.js';

const READY = { status: 'ready', checks: { database: 'ok', migrations: 'ok', signing_key: 'ok', thread_pool: 'ok', audit_log: 'ok' } };

let h: Harness;
beforeEach(async () => {
  h = await startHarness();
});
afterEach(() => h.close());

/**
 * Takes every connection the app's database handle has (SQLite: its one connection; PostgreSQL:
 * the whole pool) and holds them until `release` is called: a database that stopped answering.
 */
async function hangDatabase(db: Db, connections: number): Promise<() => Promise<void>> {
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  const entered: Promise<void>[] = [];
  const held: Promise<void>[] = [];
  for (let i = 0; i < connections; i += 1) {
    entered.push(
      new Promise<void>((inside) => {
        held.push(
          db.connection().execute(async () => {
            inside();
            await released;
          }),
        );
      }),
    );
  }
  await Promise.all(entered);
  return async () => {
    release();
    await Promise.all(held);
  };
}

// The harness opens its database with openDatabase's default pool (10 connections on PostgreSQL).
const heldConnections = () => (testDialect === 'postgres' ? 10 : 1);

describe('probe access lines', () => {
  it('are logged at debug level only, while other requests stay at info', async () => {
    const before = h.logLines.length;
    const probe = await h.request.get('/healthz');
    const ready = await h.request.get('/readyz');
    const scrape = await h.request.get('/metrics');
    expect(scrape.status).toBe(200);
    const other = await h.request.get('/.well-known/jwks.json');
    const lines = h.logLines.slice(before).filter((l) => l.msg === 'request');
    const ids = lines.map((l) => l.request_id);
    expect(ids).not.toContain(probe.headers['x-request-id']);
    expect(ids).not.toContain(ready.headers['x-request-id']);
    expect(ids).not.toContain(scrape.headers['x-request-id']);
    expect(ids).toContain(other.headers['x-request-id']);

    const verbose = await startHarness({ LOG_LEVEL: 'debug' });
    try {
      const res = await verbose.request.get('/healthz');
      expect(verbose.logLines.find((l) => l.msg === 'request' && l.request_id === res.headers['x-request-id'])).toMatchObject({ level: 20, route: '/healthz' });
    } finally {
      await verbose.close();
    }
  });
});

describe('GET /healthz', () => {
  it('answers 200 {"status":"ok"} with Cache-Control: no-store, and HEAD without a body', async () => {
    const res = await h.request.get('/healthz');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ status: 'ok' });
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.headers['content-type']).toMatch(/^application\/json/);

    const head = await h.request.head('/healthz');
    expect(head.status).toBe(200);
    expect(head.text ?? '').toBe('');
    expect((await h.request.post('/healthz')).status).toBe(405);
  });

  it('does not touch the database: it answers while the database hangs', async () => {
    // The database answers nothing until release(): a /healthz that asked it would not answer at all.
    const release = await hangDatabase(h.db, heldConnections());
    try {
      const res = await h.request.get('/healthz');
      expect(res.status).toBe(200);
    } finally {
      await release();
    }
  });
});

describe('GET /readyz', () => {
  // One result answers every probe for a second (of the harness clock): each test starts past it.
  beforeEach(() => h.clock.advance(2));

  it('answers 200 with every check ok, and HEAD', async () => {
    const res = await h.request.get('/readyz');
    expect(res.status).toBe(200);
    expect(res.body).toEqual(READY);
    expect(res.headers['cache-control']).toBe('no-store');
    expect((await h.request.head('/readyz')).status).toBe(200);
  });

  it('answers 503 naming migrations when a migration the code knows is not recorded as applied', async () => {
    const last = Object.keys(migrations).at(-1)!;
    await sql`delete from kysely_migration where name = ${last}`.execute(h.db);
    const res = await h.request.get('/readyz');
    expect(res.status).toBe(503);
    expect(res.body).toEqual({ status: 'not_ready', checks: { database: 'ok', migrations: 'failing: 1 not applied', signing_key: 'ok', thread_pool: 'ok', audit_log: 'ok' } });
    expect(res.headers['cache-control']).toBe('no-store');
  });

  it('stays ready when the database has a migration this code does not know (a newer instance applied it)', async () => {
    await sql`insert into kysely_migration (name, timestamp) values (${'2099-01-01-0001-future'}, ${new Date().toISOString()})`.execute(h.db);
    expect((await h.request.get('/readyz')).body).toEqual(READY);
  });

  it('answers 503 naming migrations when the migration table is gone', async () => {
    await sql`drop table kysely_migration`.execute(h.db);
    const res = await h.request.get('/readyz');
    expect(res.status).toBe(503);
    expect(res.body.checks).toEqual({ database: 'ok', migrations: 'failing: query failed', signing_key: 'ok', thread_pool: 'ok', audit_log: 'ok' });
  });

  /**
   * /readyz while something it checks is held: a 503 naming `check` once the 2 s deadline passes
   * (not a hung probe), then, once `release` has freed it and the cached answer has expired, ready.
   */
  async function notReadyWhileHeld(release: () => Promise<void>, check: string, checks: Record<string, string>): Promise<void> {
    let res;
    const started = performance.now();
    try {
      res = await h.request.get('/readyz');
    } finally {
      await release();
    }
    const elapsed = performance.now() - started;
    expect(res.status).toBe(503);
    expect(res.body).toEqual({ status: 'not_ready', checks });
    // Not a speed: the deadline itself, which must not give up on a database that is only slow.
    // A probe that hung instead would fail the test by its timeout.
    expect(elapsed).toBeGreaterThanOrEqual(1900);
    expect(h.logLines.some((l) => l.msg === 'readiness check failed' && l.check === check)).toBe(true);

    h.clock.advance(2);
    expect((await h.request.get('/readyz')).body).toEqual(READY);
  }

  it('answers 503 naming database within the timeout when the database hangs, and ready again once it answers', async () => {
    const release = await hangDatabase(h.db, heldConnections());
    await notReadyWhileHeld(release, 'database', { database: 'failing: timeout', migrations: 'failing: database unavailable', signing_key: 'ok', thread_pool: 'ok', audit_log: 'ok' });
  });

  it("answers 503 naming thread_pool within the timeout when libuv's pool is held, and ready again once it is free", async () => {
    // Every pool thread waits to open a FIFO nobody writes to: the network file read that hangs.
    const dir = mkdtempSync(join(tmpdir(), 'tessera-fifo-'));
    const threads = Number(process.env.UV_THREADPOOL_SIZE) || 4;
    const fifos = Array.from({ length: threads }, (_, i) => join(dir, `fifo-${i}`));
    for (const fifo of fifos) execFileSync('mkfifo', [fifo]);
    const opened = fifos.map((fifo) => open(fifo, 'r'));
    const release = async () => {
      for (const fifo of fifos) closeSync(openSync(fifo, 'w'));
      for (const handle of await Promise.all(opened)) await handle.close();
      rmSync(dir, { recursive: true, force: true });
    };
    await notReadyWhileHeld(release, 'thread_pool', { database: 'ok', migrations: 'ok', signing_key: 'ok', thread_pool: 'failing: timeout', audit_log: 'ok' });
  });

  it('answers 503 naming audit_log while audit rows cannot be committed, for a while after the last failure', async () => {
    const { client, secret } = await h.createClient({ client_name: 'audited', audience: ['https://api.example.com'] });
    await sql`drop table audit_events`.execute(h.db);
    const res = await h.request.post('/oauth/token').set('Authorization', basic(client.clientId, secret)).type('form').send({ grant_type: 'client_credentials' });
    expect(res.status).toBe(500);
    const notReady = await h.request.get('/readyz');
    expect(notReady.status).toBe(503);
    expect(notReady.body.checks).toEqual({ database: 'ok', migrations: 'ok', signing_key: 'ok', thread_pool: 'ok', audit_log: 'failing: commits failing' });
    // Out of rotation it would never learn commits work again: ready once the hold is over.
    h.clock.advance(AUDIT_FAILURE_HOLD_MS / 1000);
    expect((await h.request.get('/readyz')).status).toBe(200);
  });

  it('answers 503 naming signing_key when no active key is loaded', async () => {
    Object.defineProperty(h.keys, 'current', {
      get: () => {
        throw new KeystoreError('ERR_NO_ACTIVE_KEY', 'exactly one active signing key is required, found 0');
      },
    });
    const res = await h.request.get('/readyz');
    expect(res.status).toBe(503);
    expect(res.body).toEqual({ status: 'not_ready', checks: { database: 'ok', migrations: 'ok', signing_key: 'failing: no active key', thread_pool: 'ok', audit_log: 'ok' } });
    expect(res.text).not.toContain('exactly one');
  });

  it('answers concurrent probes with one check, and reuses its result for a second', async () => {
    let queries = 0;
    const counted = h.db.withPlugin({
      transformQuery: (args) => ((queries += 1), args.node),
      transformResult: (args) => Promise.resolve(args.result),
    });
    const app = new Koa();
    app.use(readyz({ db: counted, keys: h.keys, auditLog: h.service.auditLog, log: createLogger('silent'), clock: h.clock }));
    const probe = () => supertest(app.callback()).get('/readyz');

    const answers = await Promise.all(Array.from({ length: 20 }, probe));
    expect(answers.map((r) => r.status)).toEqual(Array(20).fill(200));
    expect(queries).toBe(2); // select 1, and the migration list: once for all twenty

    // Within the second, a change is not seen yet; after it, it is.
    await sql`delete from kysely_migration where name = ${Object.keys(migrations).at(-1)!}`.execute(h.db);
    expect((await probe()).status).toBe(200);
    expect(queries).toBe(2);
    h.clock.advance(2);
    expect((await probe()).status).toBe(503);
    expect(queries).toBe(4);
  });

  it('is neither audited nor rate-limited', async () => {
    const limited = await startHarness({ AUTH_FAILURES_PER_ADDRESS: '1', AUTH_BACKOFF_MAX_ADDRESS: '900' });
    try {
      const bad = () => limited.request.post('/oauth/token').type('form').set('Authorization', basic('nobody', 'wrong-secret')).send('grant_type=client_credentials');
      await bad();
      await bad();
      expect((await bad()).status).toBe(429);
      const rows = (await limited.auditRows()).length;
      for (let i = 0; i < 20; i += 1) {
        expect((await limited.request.get('/healthz')).status).toBe(200);
        expect((await limited.request.get('/readyz')).status).toBe(200);
      }
      expect(await limited.auditRows()).toHaveLength(rows);
    } finally {
      await limited.close();
    }
  });
});

describe('readiness with a broken database', () => {
  const PASSWORD = 'hunter2-readiness-probe';

  const probe = (db: Db) => {
    const app = new Koa();
    app.use(readyz({ db, keys: h.keys, auditLog: h.service.auditLog, log: createLogger('silent'), clock: h.clock }));
    return supertest(app.callback()).get('/readyz');
  };

  it('answers 503 naming database when the connection is closed', async () => {
    const db = openDatabase(h.config.databaseUrl);
    // (kysely ignores destroy() on a handle that never connected.)
    await sql`select 1`.execute(db);
    await db.destroy();
    const res = await probe(db);
    expect(res.status).toBe(503);
    expect(res.body).toEqual({ status: 'not_ready', checks: { database: 'failing: query failed', migrations: 'failing: database unavailable', signing_key: 'ok', thread_pool: 'ok', audit_log: 'ok' } });
  });

  it('answers 503 naming database when the server refuses connections, without the URL, the password or a stack in the body', async () => {
    const db = openDatabase(`postgres://tessera:${PASSWORD}@127.0.0.1:1/tessera`);
    try {
      const res = await probe(db);
      expect(res.status).toBe(503);
      expect(res.body.checks.database).toBe('failing: query failed');
      expect(res.text).not.toContain(PASSWORD);
      expect(res.text).not.toContain('postgres');
      expect(res.text).not.toContain('127.0.0.1');
      expect(res.text).not.toMatch(/ECONNREFUSED|\n\s+at /);
    } finally {
      await db.destroy();
    }
  });
});
