/**
 * Admin lists page by cursor over text keys (client_id, audit event id), which needs the same
 * order on every dialect: byte order. SQLite compares text bytewise already; a PostgreSQL database
 * created with a linguistic collation (en_US.UTF-8, say) would not. Frozen in time.
 */
import { PostgresAdapter, sql, type Kysely } from 'kysely';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyDb = Kysely<any>;

const KEYS = [
  ['clients', 'client_id'],
  ['client_secrets', 'id'],
  ['audit_events', 'id'],
] as const;

const onPostgres = (db: AnyDb) => db.getExecutor().adapter instanceof PostgresAdapter;

export async function up(db: AnyDb): Promise<void> {
  if (!onPostgres(db)) return;
  for (const [table, column] of KEYS) {
    await sql`alter table ${sql.table(table)} alter column ${sql.ref(column)} type text collate "C"`.execute(db);
  }
}

export async function down(db: AnyDb): Promise<void> {
  if (!onPostgres(db)) return;
  for (const [table, column] of KEYS) {
    await sql`alter table ${sql.table(table)} alter column ${sql.ref(column)} type text collate "default"`.execute(db);
  }
}
