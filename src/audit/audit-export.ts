/**
 * Reading the whole audit log out, oldest first, a page at a time. Pages are found by keyset on
 * (occurred_at, id) — a total order, ids being unique — so every row within the bounds comes out
 * exactly once whatever the table's size, and memory holds one page. Each page is its own short
 * query: no read transaction stays open for the length of the export.
 */
import type { Db } from '../db/database.js';
import type { AuditEventRow } from './audit-event.table.js';

/** Rows per query. */
export const EXPORT_BATCH = 1000;

/**
 * An event is stamped when it is recorded and committed a moment later (milliseconds normally,
 * seconds when the database is slow). An export reaching up to the present could pass over a row
 * still being committed, and a next export starting where this one ended would never see it; so an
 * export stops this long before the present, far beyond a commit's normal duration.
 */
export const EXPORT_SETTLE_MS = 60_000;

export interface ExportRange {
  /** Epoch milliseconds, inclusive. */
  readonly since: number;
  /** Epoch milliseconds, exclusive. */
  readonly until?: number | undefined;
  readonly batchSize?: number | undefined;
}

/** Pages of audit rows with since ≤ occurred_at < until, ordered by (occurred_at, id). */
export async function* auditEventPages(db: Db, range: ExportRange): AsyncGenerator<AuditEventRow[]> {
  const batchSize = range.batchSize ?? EXPORT_BATCH;
  let after: { occurredAt: number; id: string } | undefined;
  for (;;) {
    let q = db.selectFrom('audit_events').selectAll().orderBy('occurred_at').orderBy('id').limit(batchSize);
    if (after === undefined) {
      q = q.where('occurred_at', '>=', range.since);
    } else {
      const { occurredAt, id } = after;
      // The range condition on occurred_at alone lets the occurred_at index bound the scan.
      q = q.where('occurred_at', '>=', occurredAt).where((eb) => eb.or([eb('occurred_at', '>', occurredAt), eb('id', '>', id)]));
    }
    if (range.until !== undefined) q = q.where('occurred_at', '<', range.until);
    const rows = await q.execute();
    if (rows.length > 0) yield rows;
    if (rows.length < batchSize) return;
    const last = rows[rows.length - 1]!;
    after = { occurredAt: Number(last.occurred_at), id: last.id };
  }
}
