/**
 * The audit log: every issuance and every failed token request, committed to the database
 * before the caller gets an answer, and mirrored as one JSON log line.
 */
import { randomBytes } from 'node:crypto';

import type { Clock } from '../clock.js';
import type { Db } from '../db/database.js';
import type { Logger } from '../log.js';
import type { NewAuditEventRow } from './audit-event.table.js';

/** What a caller records; the log assigns the id and the time. */
export type AuditEvent = Omit<NewAuditEventRow, 'id' | 'occurred_at'>;

/** An event with every field the caller does not name set to null; `details` is serialized. */
export function auditEvent(
  fields: Pick<AuditEvent, 'type' | 'outcome'> & Partial<Omit<AuditEvent, 'details'>> & { details?: Record<string, unknown> },
): AuditEvent {
  const { details, ...rest } = fields;
  return {
    client_id: null,
    remote_addr: null,
    user_agent: null,
    request_id: null,
    requested_scope: null,
    granted_scope: null,
    audience: null,
    jti: null,
    token_expires_at: null,
    error: null,
    reason: null,
    ...rest,
    details: details === undefined ? null : JSON.stringify(details),
  };
}

let lastMs = 0;
let sequence = 0;

/**
 * Ids sort by time, then by order of recording within this process: 12 hex digits of epoch
 * milliseconds, a 4-hex-digit sequence for events in the same millisecond, then randomness so
 * processes sharing a database never collide. Ordering by id is ordering by time, which keeps
 * paging stable without a database sequence.
 */
export function newEventId(nowMs: number): string {
  if (nowMs > lastMs) {
    lastMs = nowMs;
    sequence = 0;
  } else {
    sequence += 1;
  }
  return `${lastMs.toString(16).padStart(12, '0')}${(sequence & 0xffff).toString(16).padStart(4, '0')}${randomBytes(6).toString('hex')}`;
}

const SECRET = /tsec_[0-9a-f]{16}_[A-Za-z0-9_-]*/g;
const JWT = /eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*/g;
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/g;

/**
 * Makes a caller-supplied value safe to record: anything shaped like a Tessera secret or a JWT is
 * masked (a workload that swaps client_id and client_secret must not get its secret logged), control
 * characters are replaced, and the length is bounded. Empty and non-string values become null.
 */
export function scrub(value: unknown, max = 256): string | null {
  if (typeof value !== 'string' || value === '') return null;
  return value.replace(SECRET, 'tsec_[redacted]').replace(JWT, '[jwt redacted]').replace(CONTROL, '\uFFFD').slice(0, max);
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
    const row = { id: newEventId(occurredAt), occurred_at: occurredAt, ...event, details: event.details ?? null };
    await this.db.insertInto('audit_events').values(row).execute();
    this.log.info({ audit: row }, event.type);
  }
}
