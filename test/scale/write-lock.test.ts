/**
 * The write lock every PostgreSQL transaction takes (db/database.ts): held one transaction at a
 * time across instances, so it must never be held, or waited for, without bound.
 */
import pg from 'pg';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { revokeClientTokens, rotateSecret } from '../../src/clients/client.service.js';
import { secretIdOf } from '../../src/clients/secret.js';
import { IDLE_IN_TRANSACTION_TIMEOUT, LOCK_TIMEOUT, exclusively, openDatabase, type Db } from '../../src/db/database.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { startHarness } from '../support/harness.js';

describe('write transactions on PostgreSQL', () => {
  let database: TestDatabase;
  let db: Db;

  beforeAll(async () => {
    database = await createTestDatabase('');
    // An operator's server default that would take each transaction's snapshot before the lock.
    const url = new URL(database.url);
    url.searchParams.set('options', `${url.searchParams.get('options') ?? ''} -c default_transaction_isolation=serializable`.trim());
    db = openDatabase(url.href);
  });
  afterAll(async () => {
    await db.destroy();
    await database.drop();
  });

  it('run read committed, with a bounded wait for the lock and a bounded idle time holding it', async () => {
    const settings = await db.transaction().execute(async (trx) => {
      const { rows } = await sql<{ isolation: string; lock: string; idle: string }>`
        select current_setting('transaction_isolation') as isolation, current_setting('lock_timeout') as lock,
               current_setting('idle_in_transaction_session_timeout') as idle`.execute(trx);
      return rows[0];
    });
    expect(settings).toEqual({ isolation: 'read committed', lock: LOCK_TIMEOUT, idle: IDLE_IN_TRANSACTION_TIMEOUT });
    // Outside a transaction the session keeps its own settings.
    const { rows } = await sql<{ lock: string }>`select current_setting('lock_timeout') as lock`.execute(db);
    expect(rows[0]!.lock).toBe('0');
  });

  it('gives up waiting for a lock another session holds, instead of queueing for ever', async () => {
    // What an instance paused in the middle of a write transaction looks like to the others.
    const stalled = new pg.Client({ connectionString: database.url });
    await stalled.connect();
    try {
      await stalled.query('begin');
      // The write lock's key: "tessera" in ASCII.
      await stalled.query(`select pg_advisory_xact_lock(${0x74657373657261n})`);
      const outcome = await db
        .transaction()
        .execute(() => Promise.resolve('committed'))
        .catch((err: { code?: string }) => err.code);
      expect(outcome).toBe('55P03'); // lock_not_available
    } finally {
      await stalled.query('rollback');
      await stalled.end();
    }
    // The connection that gave up went back to the pool out of its failed transaction: every
    // connection serves the next queries.
    const answers = await Promise.all(Array.from({ length: 12 }, () => sql<{ one: number }>`select 1 as one`.execute(db).then((r) => r.rows[0]!.one)));
    expect(answers).toEqual(Array(12).fill(1));
  });

  it('gives up waiting for the start-up lock another session holds, and leaves the session as it was', async () => {
    const stalled = new pg.Client({ connectionString: database.url });
    await stalled.connect();
    try {
      // The lock `exclusively` takes: the write lock's key plus one.
      await stalled.query(`select pg_advisory_lock(${0x74657373657261n + 1n})`);
      const outcome = await exclusively(db, () => Promise.resolve('ran')).catch((err: { code?: string }) => err.code);
      expect(outcome).toBe('55P03'); // lock_not_available
    } finally {
      await stalled.end();
    }
    expect(await exclusively(db, () => Promise.resolve('ran'))).toBe('ran');
    const { rows } = await sql<{ lock: string }>`select current_setting('lock_timeout') as lock`.execute(db);
    expect(rows[0]!.lock).toBe('0');
  }, 30_000);
});

describe('a write that waits for the lock', () => {
  it('reads the time once the lock is held: revoke-tokens revokes what was issued while it waited, a rotation overlaps from when it applies', async () => {
    const h = await startHarness();
    const stalled = new pg.Client({ connectionString: h.config.databaseUrl });
    await stalled.connect();
    try {
      const { client, secret } = await h.createClient({ client_name: 'w', audience: ['https://api.example.com'] });
      await stalled.query('begin');
      await stalled.query(`select pg_advisory_xact_lock(${0x74657373657261n})`);
      const revoking = revokeClientTokens(h.service, client.clientId);
      const rotating = rotateSecret(h.service, client.clientId, 60);
      // Tokens signed during the wait carry these seconds.
      h.clock.advance(3);
      const waitedUntil = Math.floor(h.clock.now() / 1000);
      await stalled.query('commit');
      expect(await revoking).toBe(waitedUntil);
      await rotating;
      const previous = await h.db.selectFrom('client_secrets').select('expires_at').where('id', '=', secretIdOf(secret)!).executeTakeFirstOrThrow();
      expect(previous.expires_at).toBe(waitedUntil + 60);
    } finally {
      await stalled.end();
      await h.close();
    }
  });
});
