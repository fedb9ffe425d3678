import { DEFAULT_MIGRATION_TABLE, Migrator, PostgresAdapter, sql } from 'kysely';

import { migrations } from '../../migrations/index.js';
import type { Db } from './database.js';

export class MigrationError extends Error {
  readonly code = 'ERR_MIGRATION';
}

export interface MigrationOutcome {
  /** The migrations applied now. */
  readonly applied: string[];
  /** Migrations a newer version has applied, which this one does not know (see migrateToLatest). */
  readonly newer: string[];
}

/**
 * Applies every pending migration, all in one transaction on either dialect: one that fails leaves
 * the schema as it was, and processes migrating at once take turns.
 *
 * Migrations only ever add to the schema, so a version keeps running on a database that a newer
 * one has migrated further (a rolling upgrade, or going back to the previous release): migrations
 * it does not know are tolerated when every migration it knows is applied and they all come after
 * its own. Anything else (one of its own missing in between) is refused.
 *
 * `upgrade: false` (CLI commands other than `migrate`) creates the schema of a new database but
 * refuses to upgrade one in use: that is for `tessera migrate` or the server, when the operator means it.
 */
export async function migrateToLatest(db: Db, { upgrade = true }: { upgrade?: boolean } = {}): Promise<MigrationOutcome> {
  const schema = await currentSchema(db);
  const known = Object.keys(migrations).sort();
  const executed = await executedMigrations(db, schema);
  const newer = executed.filter((name) => !known.includes(name));
  const pending = known.filter((name) => !executed.includes(name));
  if (!upgrade && executed.length > 0 && pending.length > 0) {
    throw new MigrationError(`the database schema is older than this version (${pending.join(', ')} not applied): run \`tessera migrate\` first`);
  }
  if (newer.length > 0) {
    if (pending.length > 0 || newer.some((name) => name < known.at(-1)!)) {
      throw new MigrationError(`the database has migrations this version does not know (${newer.join(', ')}) while ${pending.length} of its own are not applied`);
    }
    return { applied: [], newer };
  }

  const migrator = new Migrator({ db, provider: { getMigrations: () => Promise.resolve({ ...migrations }) }, migrationTableSchema: schema });
  const { error, results = [] } = await migrator.migrateToLatest();
  const failed = results.find((r) => r.status === 'Error');
  if (error !== undefined || failed) {
    const reason = error instanceof Error ? `: ${error.message}` : '';
    throw new MigrationError(`${failed ? `migration ${failed.migrationName}` : 'migrating the database'} failed${reason}`, { cause: error });
  }
  return { applied: results.filter((r) => r.status === 'Success').map((r) => r.migrationName), newer: [] };
}

/** The names kysely has recorded as applied; none on a database it has not migrated yet. */
async function executedMigrations(db: Db, schema: string | undefined): Promise<string[]> {
  const tables = await db.introspection.getTables({ withInternalKyselyTables: true });
  if (!tables.some((t) => t.name === DEFAULT_MIGRATION_TABLE && (schema === undefined || t.schema === schema))) return [];
  const table = sql.table(schema === undefined ? DEFAULT_MIGRATION_TABLE : `${schema}.${DEFAULT_MIGRATION_TABLE}`);
  const { rows } = await sql<{ name: string }>`select name from ${table}`.execute(db);
  return rows.map((row) => row.name);
}

/**
 * On PostgreSQL, the schema the connection works in (DATABASE_URL's search_path, else public).
 * kysely looks for its migration tables by name in every schema unless told which one, so a second
 * installation in another schema of the same database would see the first one's tables.
 */
async function currentSchema(db: Db): Promise<string | undefined> {
  if (!(db.getExecutor().adapter instanceof PostgresAdapter)) return undefined;
  const { rows } = await sql<{ schema: string }>`select current_schema() as schema`.execute(db);
  return rows[0]?.schema;
}
