/** Queries on clients and client_secrets. Plain functions taking the handle (or a transaction) first. */
import { sql, type Transaction } from 'kysely';

import type { Database, Db } from '../db/database.js';
import type { ClientSecretRow, ClientUpdate, NewClientRow, NewClientSecretRow } from './client.table.js';
import { toClient, type Client } from './client.js';

type Handle = Db | Transaction<Database>;

export async function findClient(db: Handle, clientId: string): Promise<Client | undefined> {
  const row = await db.selectFrom('clients').selectAll().where('client_id', '=', clientId).executeTakeFirst();
  return row && toClient(row);
}

export async function listClients(db: Handle): Promise<Client[]> {
  const rows = await db.selectFrom('clients').selectAll().orderBy('client_id').execute();
  return rows.map(toClient);
}

export function findSecret(db: Handle, clientId: string, secretId: string): Promise<ClientSecretRow | undefined> {
  return db
    .selectFrom('client_secrets')
    .selectAll()
    .where('client_id', '=', clientId)
    .where('id', '=', secretId)
    .executeTakeFirst();
}

/** Moves with every committed change to a client or a secret other than its last use (by trigger). */
export async function clientsVersion(db: Handle): Promise<number> {
  const row = await db.selectFrom('clients_version').select('version').executeTakeFirstOrThrow();
  return Number(row.version);
}

export class DuplicateClientError extends Error {
  readonly code = 'ERR_DUPLICATE_CLIENT';
}

/** Inserts a client with its first secret hash, in the caller's write transaction: the check for a taken id and the insert cannot be split. */
export async function insertClient(trx: Transaction<Database>, client: NewClientRow, secret: NewClientSecretRow): Promise<void> {
  const existing = await trx.selectFrom('clients').select('client_id').where('client_id', '=', client.client_id).executeTakeFirst();
  if (existing) throw new DuplicateClientError(`client ${client.client_id} already exists`);
  await trx.insertInto('clients').values(client).execute();
  await trx.insertInto('client_secrets').values(secret).execute();
}

export async function insertSecret(db: Handle, secret: NewClientSecretRow): Promise<void> {
  await db.insertInto('client_secrets').values(secret).execute();
}

/** Makes every secret of the client that is valid after `at` expire at `at` instead. */
export async function expireSecretsAfter(db: Handle, clientId: string, at: number, exceptId?: string): Promise<void> {
  let query = db
    .updateTable('client_secrets')
    .set({ expires_at: at })
    .where('client_id', '=', clientId)
    .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', at)]));
  if (exceptId !== undefined) query = query.where('id', '!=', exceptId);
  await query.execute();
}

/**
 * Secret ids of the client still valid at `now`, newest first. The newest is the one without an
 * expiry: a rotation gives every other secret one. created_at has whole seconds only, so two
 * rotations within a second would otherwise be told apart by their random ids.
 */
export async function validSecretIds(db: Handle, clientId: string, now: number): Promise<string[]> {
  const rows = await db
    .selectFrom('client_secrets')
    .select('id')
    .where('client_id', '=', clientId)
    .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', now)]))
    .orderBy(sql`expires_at is null`, 'desc')
    .orderBy('created_at', 'desc')
    .orderBy('id')
    .execute();
  return rows.map((r) => r.id);
}

/** Applies an update to one client; resolves to false when there is no such client. */
export async function updateClient(db: Handle, clientId: string, update: ClientUpdate): Promise<boolean> {
  const result = await db.updateTable('clients').set(update).where('client_id', '=', clientId).executeTakeFirst();
  return result.numUpdatedRows > 0n;
}

/** Deletes a client and, by cascade, its secrets; resolves to false when there is no such client. */
export async function deleteClientRow(db: Handle, clientId: string): Promise<boolean> {
  const result = await db.deleteFrom('clients').where('client_id', '=', clientId).executeTakeFirst();
  return result.numDeletedRows > 0n;
}

export interface ClientPageQuery {
  readonly limit: number;
  /** Return clients whose id sorts after this one. */
  readonly after?: string | undefined;
  readonly namePrefix?: string | undefined;
  readonly enabled?: boolean | undefined;
}

/** Keyset paging by client_id: stable while clients are added or removed between pages. */
export async function listClientPage(db: Handle, query: ClientPageQuery): Promise<Client[]> {
  let q = db.selectFrom('clients').selectAll().orderBy('client_id').limit(query.limit);
  if (query.after !== undefined) q = q.where('client_id', '>', query.after);
  if (query.enabled !== undefined) q = q.where('enabled', '=', query.enabled ? 1 : 0);
  if (query.namePrefix !== undefined) {
    // substr rather than LIKE: case-sensitive and wildcard-free on both SQLite and PostgreSQL.
    // substr counts characters (code points) on both dialects; JS length counts UTF-16 units.
    q = q.where(sql<string>`substr(client_name, 1, ${[...query.namePrefix].length})`, '=', query.namePrefix);
  }
  return (await q.execute()).map(toClient);
}

export function listSecrets(db: Handle, clientId: string): Promise<Omit<ClientSecretRow, 'hash'>[]> {
  return db
    .selectFrom('client_secrets')
    .select(['id', 'client_id', 'created_at', 'expires_at', 'last_used_at'])
    .where('client_id', '=', clientId)
    .orderBy(sql`expires_at is null`, 'desc')
    .orderBy('created_at', 'desc')
    .orderBy('id')
    .execute();
}

export async function expireSecret(db: Handle, secretId: string, at: number): Promise<void> {
  await db.updateTable('client_secrets').set({ expires_at: at }).where('id', '=', secretId).execute();
}

/**
 * The token path's re-hash, in a transaction of its own: on PostgreSQL it then waits its turn for
 * the write lock (db/database.ts) instead of taking a row lock that a rotation needs while holding
 * the change counter this statement's trigger needs (a deadlock).
 */
export async function updateSecretHash(db: Db, secretId: string, hash: string): Promise<void> {
  await db.transaction().execute((trx) => trx.updateTable('client_secrets').set({ hash }).where('id', '=', secretId).execute());
}
