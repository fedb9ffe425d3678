/**
 * A counter that every committed change to a client or a secret moves, kept by triggers so that no
 * writer can forget it: the server, the CLI, another instance, an operator's SQL. A server then
 * keeps its client records until the counter moves (src/clients/client-records.ts) and checks it
 * once per CLIENT_CACHE_TTL, instead of reading every client again each TTL.
 *
 * Recording a secret's last use is not a change to what authenticates: `last_used_at` is left out.
 * A column added to client_secrets later must be added to SECRET_COLUMNS. Frozen in time.
 */
import { PostgresAdapter, sql, type Kysely } from 'kysely';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyDb = Kysely<any>;

const SECRET_COLUMNS = 'id, client_id, hash, created_at, expires_at';

const onPostgres = (db: AnyDb) => db.getExecutor().adapter instanceof PostgresAdapter;

export async function up(db: AnyDb): Promise<void> {
  await db.schema
    .createTable('clients_version')
    // One row, ever.
    .addColumn('id', 'integer', (c) => c.primaryKey().check(sql`id = 1`))
    .addColumn('version', 'bigint', (c) => c.notNull())
    .execute();
  await db.insertInto('clients_version').values({ id: 1, version: 0 }).execute();

  if (onPostgres(db)) {
    // Per statement: a bulk change moves the counter once. The counter is the one beside the table
    // written (TG_TABLE_SCHEMA), not whatever the writer's search_path finds: several installations
    // may share a database, and an operator's session may point at another one, or at none.
    await sql`create function clients_version_bump() returns trigger language plpgsql as $$
      begin
        execute format('update %I.clients_version set version = version + 1', tg_table_schema);
        return null;
      end $$`.execute(db);
    await sql`create trigger clients_version after insert or update or delete or truncate on clients
      for each statement execute function clients_version_bump()`.execute(db);
    await sql.raw(`create trigger client_secrets_version after insert or delete or truncate or update of ${SECRET_COLUMNS}
      on client_secrets for each statement execute function clients_version_bump()`).execute(db);
    return;
  }
  // SQLite has row triggers only, one event each.
  const bump = 'begin update clients_version set version = version + 1; end';
  for (const [name, event] of [
    ['clients_version_insert', 'insert on clients'],
    ['clients_version_update', 'update on clients'],
    ['clients_version_delete', 'delete on clients'],
    ['client_secrets_version_insert', 'insert on client_secrets'],
    ['client_secrets_version_update', `update of ${SECRET_COLUMNS} on client_secrets`],
    ['client_secrets_version_delete', 'delete on client_secrets'],
  ]) {
    await sql.raw(`create trigger ${name} after ${event} ${bump}`).execute(db);
  }
}

export async function down(db: AnyDb): Promise<void> {
  if (onPostgres(db)) {
    await sql`drop trigger client_secrets_version on client_secrets`.execute(db);
    await sql`drop trigger clients_version on clients`.execute(db);
    await sql`drop function clients_version_bump()`.execute(db);
  } else {
    for (const table of ['clients', 'client_secrets']) {
      for (const event of ['insert', 'update', 'delete']) await sql.raw(`drop trigger ${table}_version_${event}`).execute(db);
    }
  }
  await db.schema.dropTable('clients_version').execute();
}
