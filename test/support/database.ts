/**
 * The database a test runs on. Every suite runs on SQLite; when TEST_DATABASE_URL is set the vitest
 * project "postgres" runs it again on PostgreSQL (vitest.config.ts), each installation in a schema
 * of its own that is dropped afterwards.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';

import { Migrator, sql } from 'kysely';
import pg from 'pg';

import { migrations } from '../../migrations/index.js';
import type { Dialect } from '../../src/config.js';
import type { Db } from '../../src/db/database.js';

export const testDialect: Dialect = process.env.TESSERA_TEST_DIALECT === 'postgres' ? 'postgres' : 'sqlite';

export interface TestDatabase {
  /** What DATABASE_URL is set to. */
  readonly url: string;
  /** Drops the schema (PostgreSQL); a SQLite file goes with its directory. */
  drop(): Promise<void>;
}

/** A new, empty database: `tessera.db` in `dir`, or a new schema in TEST_DATABASE_URL's database. */
export async function createTestDatabase(dir: string): Promise<TestDatabase> {
  if (testDialect === 'sqlite') return { url: join(dir, 'tessera.db'), drop: () => Promise.resolve() };
  const base = process.env.TEST_DATABASE_URL;
  if (!base) throw new Error('TESSERA_TEST_DIALECT=postgres needs TEST_DATABASE_URL');
  const schema = `tessera_test_${randomBytes(8).toString('hex')}`;
  await run(base, `create schema ${schema}`);
  const url = new URL(base);
  url.searchParams.set('options', `-c search_path=${schema}`);
  return { url: url.href, drop: () => run(base, `drop schema if exists ${schema} cascade`) };
}

async function run(url: string, statement: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(statement);
  } finally {
    await client.end();
  }
}

/** Applies every migration but the last: the database as the previous version left it. */
export async function migrateAllButLast(db: Db): Promise<void> {
  const schema = testDialect === 'postgres' ? (await sql<{ s: string }>`select current_schema() as s`.execute(db)).rows[0]!.s : undefined;
  const migrator = new Migrator({ db, provider: { getMigrations: () => Promise.resolve({ ...migrations }) }, migrationTableSchema: schema });
  const { error } = await migrator.migrateTo(Object.keys(migrations).sort().at(-2)!);
  if (error) throw error as Error;
}
