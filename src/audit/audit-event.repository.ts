/** Reading the audit log: paged newest first, by id, and a token's issuance by jti. */
import type { Transaction } from 'kysely';

import type { Database, Db } from '../db/database.js';
import type { AuditEventRow } from './audit-event.table.js';

export interface AuditQuery {
  readonly limit: number;
  /** Return events older than this id (ids sort by time). */
  readonly before?: string | undefined;
  readonly clientId?: string | undefined;
  readonly type?: string | undefined;
  readonly outcome?: string | undefined;
  /** Epoch milliseconds, inclusive. */
  readonly since?: number | undefined;
  /** Epoch milliseconds, exclusive. */
  readonly until?: number | undefined;
}

export async function listAuditEvents(db: Db, query: AuditQuery): Promise<AuditEventRow[]> {
  let q = db.selectFrom('audit_events').selectAll().orderBy('id', 'desc').limit(query.limit);
  if (query.before !== undefined) q = q.where('id', '<', query.before);
  if (query.clientId !== undefined) q = q.where('client_id', '=', query.clientId);
  if (query.type !== undefined) q = q.where('type', '=', query.type);
  if (query.outcome !== undefined) q = q.where('outcome', '=', query.outcome as AuditEventRow['outcome']);
  if (query.since !== undefined) q = q.where('occurred_at', '>=', query.since);
  if (query.until !== undefined) q = q.where('occurred_at', '<', query.until);
  return q.execute();
}

export function findAuditEvent(db: Db, id: string): Promise<AuditEventRow | undefined> {
  return db.selectFrom('audit_events').selectAll().where('id', '=', id).executeTakeFirst();
}

/** The issuance of a token, which names its client and expiry. */
export function findIssuance(db: Db, jti: string): Promise<{ client_id: string | null; token_expires_at: number | null; audience: string | null } | undefined> {
  return db
    .selectFrom('audit_events')
    .select(['client_id', 'token_expires_at', 'audience'])
    .where('jti', '=', jti)
    .where('type', '=', 'token.issued')
    .executeTakeFirst();
}

/** When an event of this type last happened to this client (epoch ms), if ever. */
export async function lastEventTime(db: Db | Transaction<Database>, clientId: string, type: string): Promise<number | undefined> {
  const row = await db
    .selectFrom('audit_events')
    .select('occurred_at')
    .where('client_id', '=', clientId)
    .where('type', '=', type)
    .orderBy('occurred_at', 'desc')
    .limit(1)
    .executeTakeFirst();
  return row === undefined ? undefined : Number(row.occurred_at);
}
