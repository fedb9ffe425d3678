/** Audit rows written straight to the table, at chosen times: for retention and export tests. */
import { randomBytes } from 'node:crypto';

import type { NewAuditEventRow } from '../../src/audit/audit-event.table.js';
import { auditEvent } from '../../src/audit/audit-log.js';
import type { Db } from '../../src/db/database.js';

/** One row of type `type` at each of `times` (epoch ms), with random ids, so ids and times disagree. */
export function rowsAt(times: readonly number[], type = 'test.old'): NewAuditEventRow[] {
  return times.map((occurred_at) => ({ id: randomBytes(14).toString('hex'), occurred_at, ...auditEvent({ type, outcome: 'success' }) }));
}

/** Inserts the rows, 500 to a statement (SQLite bounds the parameters of one). */
export async function insertRows(db: Db, rows: readonly NewAuditEventRow[]): Promise<void> {
  for (let i = 0; i < rows.length; i += 500) await db.insertInto('audit_events').values(rows.slice(i, i + 500)).execute();
}
