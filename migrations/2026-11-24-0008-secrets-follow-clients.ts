/**
 * A client's secrets go with it however it is deleted. The foreign key cascades on PostgreSQL
 * always, but on SQLite only on connections that turn foreign keys on, as Tessera's do and the
 * sqlite3 shell does not: a client deleted there by hand left its secrets behind, and they
 * authenticated again as soon as a client with the same id was created. A trigger runs whatever
 * the connection's settings; secrets already left behind that way are deleted. Frozen in time.
 */
import { PostgresAdapter, sql, type Kysely } from 'kysely';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyDb = Kysely<any>;

const onPostgres = (db: AnyDb) => db.getExecutor().adapter instanceof PostgresAdapter;

export async function up(db: AnyDb): Promise<void> {
  if (onPostgres(db)) return;
  await sql`delete from client_secrets where client_id not in (select client_id from clients)`.execute(db);
  await sql`create trigger client_secrets_follow_client after delete on clients
    begin delete from client_secrets where client_id = old.client_id; end`.execute(db);
}

export async function down(db: AnyDb): Promise<void> {
  if (onPostgres(db)) return;
  await sql`drop trigger client_secrets_follow_client`.execute(db);
}
