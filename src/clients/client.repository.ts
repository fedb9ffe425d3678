/** Queries on clients and client_secrets. Plain functions taking the handle (or a transaction) first. */
import type { Transaction } from 'kysely';

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

export class DuplicateClientError extends Error {
  readonly code = 'ERR_DUPLICATE_CLIENT';
}

/** Inserts a client with its first secret hash, atomically. */
export async function insertClient(db: Db, client: NewClientRow, secret: NewClientSecretRow): Promise<void> {
  await db.transaction().execute(async (trx) => {
    const existing = await trx.selectFrom('clients').select('client_id').where('client_id', '=', client.client_id).executeTakeFirst();
    if (existing) throw new DuplicateClientError(`client ${client.client_id} already exists`);
    await trx.insertInto('clients').values(client).execute();
    await trx.insertInto('client_secrets').values(secret).execute();
  });
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

/** Secret ids of the client still valid at `now`, newest first. */
export async function validSecretIds(db: Handle, clientId: string, now: number): Promise<string[]> {
  const rows = await db
    .selectFrom('client_secrets')
    .select('id')
    .where('client_id', '=', clientId)
    .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', now)]))
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
