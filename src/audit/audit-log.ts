/**
 * The audit log: every issuance and every failed token request, committed to the database
 * before the caller gets an answer, and mirrored as one JSON log line.
 */
import { randomBytes } from 'node:crypto';

import type { Clock } from '../clock.js';
import type { Db } from '../db/database.js';
import type { Logger } from '../log.js';
import type { AuditEventTable } from './audit-event.table.js';

/** What a caller records; the log assigns the id and the time. */
export type AuditEvent = Omit<AuditEventTable, 'id' | 'occurred_at'>;

/**
 * Ids sort by time: 12 hex digits of epoch milliseconds, then randomness. Ordering by id is
 * ordering by time, which keeps paging stable without a database sequence.
 */
export function newEventId(nowMs: number): string {
  return `${nowMs.toString(16).padStart(12, '0')}${randomBytes(8).toString('hex')}`;
}

export class AuditLog {
  constructor(
    private readonly db: Db,
    private readonly log: Logger,
    private readonly clock: Clock,
  ) {}

  /** Resolves once the row is committed; rejects if it could not be. */
  async record(event: AuditEvent): Promise<void> {
    const occurredAt = this.clock.now();
    const row = { id: newEventId(occurredAt), occurred_at: occurredAt, ...event };
    await this.db.insertInto('audit_events').values(row).execute();
    this.log.info({ audit: row }, event.type);
  }
}
