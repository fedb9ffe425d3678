/**
 * The database a test runs on. Every suite runs on SQLite; when TEST_DATABASE_URL is set the vitest
 * project "postgres" runs it again on PostgreSQL (vitest.config.ts), each installation in a schema
 * of its own that is dropped afterwards.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';

import { Migrator, PostgresAdapter, sql, type TableMetadata } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll } from 'vitest';

import { migrations } from '../../migrations/index.js';
import type { Dialect } from '../../src/config.js';
import { openDatabase, type Db } from '../../src/db/database.js';
import { migrateToLatest } from '../../src/db/migrate.js';

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

/** A `clients` row with every setting empty, for tests that write the tables directly. */
export const clientRow = (clientId: string) => ({
  client_id: clientId,
  client_name: 'c',
  description: null,
  scope: '',
  default_scope: null,
  audience: '[]',
  default_audience: null,
  grant_types: '[]',
  token_endpoint_auth_method: 'client_secret_basic',
  access_token_ttl: null,
  tokens_revoked_before: null,
  enabled: 1,
  created_at: 1,
  updated_at: 1,
});

/** Applies every migration but the last: the database as the previous version left it. */
export async function migrateAllButLast(db: Db): Promise<void> {
  const schema = testDialect === 'postgres' ? (await sql<{ s: string }>`select current_schema() as s`.execute(db)).rows[0]!.s : undefined;
  const migrator = new Migrator({ db, provider: { getMigrations: () => Promise.resolve({ ...migrations }) }, migrationTableSchema: schema });
  const { error } = await migrator.migrateTo(Object.keys(migrations).sort().at(-2)!);
  if (error) throw error as Error;
}

/** A new, migrated database for the tests of the calling describe: made before them, dropped after. */
export function migratedDatabase(): { readonly db: Db } {
  const fixture = {} as { db: Db; database: TestDatabase; dir: string };
  beforeAll(async () => {
    fixture.dir = mkdtempSync(join(tmpdir(), 'tessera-db-'));
    fixture.database = await createTestDatabase(fixture.dir);
    fixture.db = openDatabase(fixture.database.url);
    await migrateToLatest(fixture.db);
  });
  afterAll(async () => {
    await fixture.db.destroy();
    await fixture.database.drop();
    rmSync(fixture.dir, { recursive: true, force: true });
  });
  return fixture;
}

/**
 * The tables of the connection's own schema: kysely's introspection lists every schema's, and on
 * PostgreSQL the other test files' schemas fill up alongside this one.
 */
export async function ownTables(db: Db): Promise<TableMetadata[]> {
  const tables = await db.introspection.getTables();
  if (!(db.getExecutor().adapter instanceof PostgresAdapter)) return tables;
  const { rows } = await sql<{ schema: string }>`select current_schema() as schema`.execute(db);
  return tables.filter((t) => t.schema === rows[0]!.schema);
}
