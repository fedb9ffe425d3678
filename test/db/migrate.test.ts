/**
 * The migration runner: all pending migrations in one transaction, processes taking turns, and a
 * version running on a database that a newer one has migrated further (migrations only add).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import SQLite from 'better-sqlite3';
import { sql } from 'kysely';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { migrations } from '../../migrations/index.js';
import { openDatabase, type Db } from '../../src/db/database.js';
import { MigrationError, migrateToLatest } from '../../src/db/migrate.js';
import { clientRow, createTestDatabase, migrateAllButLast, ownTables, testDialect, type TestDatabase } from '../support/database.js';
import { tessera } from '../support/process.js';

const KNOWN = Object.keys(migrations).sort();
const LAST = KNOWN.at(-1)!;
const FUTURE = '2099-01-01-0001-future';

let dir: string;
let database: TestDatabase;
let db: Db;

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tessera-migrate-'));
  database = await createTestDatabase(dir);
  db = openDatabase(database.url);
});
afterEach(async () => {
  await db.destroy();
  await database.drop();
  rmSync(dir, { recursive: true, force: true });
});

/** Deletes a client as an operator's SQL would: on SQLite, as the sqlite3 shell runs, foreign keys off (better-sqlite3 turns them on). */
async function deleteByHand(clientId: string): Promise<void> {
  if (testDialect === 'postgres') {
    await db.deleteFrom('clients').where('client_id', '=', clientId).execute();
    return;
  }
  const shell = new SQLite(database.url);
  shell.pragma('foreign_keys = OFF');
  shell.prepare('delete from clients where client_id = ?').run(clientId);
  shell.close();
}

const recorded = async () => (await sql<{ name: string }>`select name from kysely_migration order by name`.execute(db)).rows.map((r) => r.name);
const record = (name: string) => sql`insert into kysely_migration (name, timestamp) values (${name}, ${new Date().toISOString()})`.execute(db);

describe('migrateToLatest', () => {
  it('applies every migration once', async () => {
    expect(await migrateToLatest(db)).toEqual({ applied: KNOWN, newer: [] });
    expect(await migrateToLatest(db)).toEqual({ applied: [], newer: [] });
    expect(await recorded()).toEqual(KNOWN);
  });

  it('runs on a database a newer version has migrated further, and says so', async () => {
    await migrateToLatest(db);
    await record(FUTURE);
    expect(await migrateToLatest(db)).toEqual({ applied: [], newer: [FUTURE] });
    expect(await recorded()).toEqual([...KNOWN, FUTURE]);
  });

  it('refuses a database with an unknown migration among its own, naming it', async () => {
    await migrateToLatest(db);
    await record('2026-01-01-0001-elsewhere');
    await expect(migrateToLatest(db)).rejects.toThrow(new MigrationError('the database has migrations this version does not know (2026-01-01-0001-elsewhere) while 0 of its own are not applied'));
  });

  it('refuses a database with an unknown migration while one of its own is not applied', async () => {
    await migrateAllButLast(db);
    await record(FUTURE);
    await expect(migrateToLatest(db)).rejects.toThrow(`(${FUTURE}) while 1 of its own are not applied`);
    expect(await recorded()).toEqual([...KNOWN.slice(0, -1), FUTURE]);
  });

  it('leaves nothing of a migration run that fails half way', async () => {
    // In the way of a later migration (0007 creates this table), once the earlier ones have run.
    await sql`create table clients_version (obstacle integer)`.execute(db);
    await expect(migrateToLatest(db)).rejects.toThrow(/^migration 2026-11-24-0007-clients-version failed: /);
    const tables = (await ownTables(db)).map((t) => t.name);
    expect(tables).toEqual(['clients_version']);
    expect(await recorded()).toEqual([]);

    await sql`drop table clients_version`.execute(db);
    expect(await migrateToLatest(db)).toEqual({ applied: KNOWN, newer: [] });
  });

  it('deletes the secrets a client deleted by hand left behind before', async () => {
    await migrateAllButLast(db);
    await db.insertInto('clients').values(clientRow('gone')).execute();
    await db.insertInto('client_secrets').values({ id: 'fedcba9876543210', client_id: 'gone', hash: 'h', created_at: 1, expires_at: null, last_used_at: null }).execute();
    await deleteByHand('gone');
    await migrateToLatest(db);
    expect(await db.selectFrom('client_secrets').select('id').execute()).toEqual([]);
  });

  it("deletes a client's secrets with it, even on a connection without foreign keys", async () => {
    await migrateToLatest(db);
    await db.insertInto('clients').values(clientRow('deleted-by-hand')).execute();
    await db.insertInto('client_secrets').values({ id: '0123456789abcdef', client_id: 'deleted-by-hand', hash: 'h', created_at: 1, expires_at: null, last_used_at: null }).execute();
    await deleteByHand('deleted-by-hand');
    expect(await db.selectFrom('client_secrets').select('id').where('client_id', '=', 'deleted-by-hand').execute()).toEqual([]);
  });

  it('with upgrade: false, creates a new database but does not upgrade one in use', async () => {
    await migrateAllButLast(db);
    await expect(migrateToLatest(db, { upgrade: false })).rejects.toThrow(
      new MigrationError(`the database schema is older than this version (${LAST} not applied): run \`tessera migrate\` first`),
    );
    expect(await recorded()).toEqual(KNOWN.slice(0, -1));

    const fresh = await createTestDatabase(mkdtempSync(join(dir, 'fresh-')));
    const freshDb = openDatabase(fresh.url);
    try {
      expect(await migrateToLatest(freshDb, { upgrade: false })).toEqual({ applied: KNOWN, newer: [] });
    } finally {
      await freshDb.destroy();
      await fresh.drop();
    }
  });

  it('lets processes migrating one new database at once take turns', async () => {
    // Three pairs: a race the runner did not serialise failed in most pairs.
    for (let round = 0; round < 3; round += 1) {
      const target = await createTestDatabase(mkdtempSync(join(dir, `race-${round}-`)));
      try {
        const env = { DATABASE_URL: target.url };
        const runs = await Promise.allSettled([tessera(env, 'migrate', '--json'), tessera(env, 'migrate', '--json')]);
        expect(runs.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled']);
        const applied = runs.map((r) => (JSON.parse((r as PromiseFulfilledResult<{ stdout: string }>).value.stdout) as { applied: string[] }).applied);
        expect(applied.flat().sort()).toEqual(KNOWN);
      } finally {
        await target.drop();
      }
    }
  });
});
