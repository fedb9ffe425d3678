/**
 * One schema on both dialects: the migrations must give SQLite and PostgreSQL the same tables,
 * columns (kind of type, NULL or not, default or not) and indexes, or code tested on one could
 * fail on the other.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { openDatabase, type Db } from '../../src/db/database.js';
import { migrateToLatest } from '../../src/db/migrate.js';
import { createTestDatabase, ownTables, type TestDatabase } from '../support/database.js';

/** The kind of a column's type, which is what the code relies on. */
function kind(dataType: string): string {
  const type = dataType.toLowerCase();
  if (/int/.test(type)) return 'integer';
  if (/char|text/.test(type)) return 'text';
  if (/real|double|float/.test(type)) return 'real';
  return type;
}

interface Shape {
  readonly columns: Record<string, string>;
  readonly indexes: string[];
}

async function shape(db: Db, indexes: () => Promise<{ table: string; columns: string }[]>): Promise<Record<string, Shape>> {
  const tables = await ownTables(db);
  const found = await indexes();
  return Object.fromEntries(
    tables.map((table) => [
      table.name,
      {
        columns: Object.fromEntries(
          table.columns.map((c) => [c.name, `${kind(c.dataType)}${c.isNullable ? ' null' : ' not null'}${c.hasDefaultValue ? ' default' : ''}`]),
        ),
        indexes: found
          .filter((i) => i.table === table.name)
          .map((i) => i.columns)
          .sort(),
      },
    ]),
  );
}

describe('the schema the migrations make', () => {
  let dir: string;
  let pgDatabase: TestDatabase;
  let sqlite: Db;
  let postgres: Db;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tessera-parity-'));
    pgDatabase = await createTestDatabase(dir);
    sqlite = openDatabase(join(dir, 'parity.db'));
    postgres = openDatabase(pgDatabase.url);
    await migrateToLatest(sqlite);
    await migrateToLatest(postgres);
  });
  afterAll(async () => {
    await Promise.all([sqlite.destroy(), postgres.destroy()]);
    await pgDatabase.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('is the same on SQLite and PostgreSQL', async () => {
    const onSqlite = await shape(sqlite, async () => {
      const names = await sql<{ table: string; name: string }>`select tbl_name as "table", name from sqlite_master where type = 'index' and name not like 'sqlite_autoindex%'`.execute(sqlite);
      return Promise.all(
        names.rows.map(async ({ table, name }) => {
          const cols = await sql<{ name: string }>`select name from pragma_index_info(${name}) order by seqno`.execute(sqlite);
          return { table, columns: cols.rows.map((c) => c.name).join(',') };
        }),
      );
    });
    const onPostgres = await shape(postgres, async () => {
      const { rows } = await sql<{ table: string; columns: string }>`
        select t.relname as "table", string_agg(a.attname, ',' order by k.ord) as columns
        from pg_index x
        join pg_class i on i.oid = x.indexrelid
        join pg_class t on t.oid = x.indrelid
        join pg_namespace n on n.oid = t.relnamespace and n.nspname = current_schema()
        cross join lateral unnest(x.indkey) with ordinality as k(attnum, ord)
        join pg_attribute a on a.attrelid = t.oid and a.attnum = k.attnum
        where not x.indisprimary
        group by t.relname, i.relname`.execute(postgres);
      return rows;
    });
    // SQLite reports every primary key but one declared INTEGER as nullable: a text primary key does
    // accept NULL there (a legacy rule SQLite keeps; Tessera always writes these keys, and only a
    // table rebuild would change it), and an INTEGER PRIMARY KEY is the rowid, never NULL.
    const pgWithSqliteKeys = structuredClone(onPostgres);
    const keys = { clients: 'client_id', client_secrets: 'id', audit_events: 'id', revoked_tokens: 'jti', limit_failures: 'key', token_buckets: 'client_id', clients_version: 'id' };
    for (const [table, columns] of Object.entries(keys)) {
      const column = pgWithSqliteKeys[table]!.columns;
      column[columns] = column[columns]!.replace(' not null', ' null');
    }
    expect(onSqlite).toEqual(pgWithSqliteKeys);
  });
});
