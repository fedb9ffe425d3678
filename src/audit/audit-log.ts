/**
 * The audit log: every issuance and every failed token request, committed to the database
 * before the caller gets an answer, and mirrored as one JSON log line.
 */
import { randomBytes } from 'node:crypto';

import type { Transaction } from 'kysely';

import type { Clock } from '../clock.js';
import type { Database } from '../db/database.js';
import type { Logger } from '../log.js';
import type { NewAuditEventRow } from './audit-event.table.js';
import type { AuditWriter } from './audit-writer.js';

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
// Drawn once: ids made by this process are already unique by time and sequence.
const PROCESS_SUFFIX = randomBytes(6).toString('hex');

/**
 * Ids sort by time, then by order of recording within this process: 12 hex digits of epoch
 * milliseconds, a 4-hex-digit sequence for events in the same millisecond, then 12 random hex
 * digits drawn once per process, so processes sharing a database never collide. Ordering by id is
 * ordering by time, which keeps paging stable without a database sequence.
 *
 * When the clock steps back, ids keep counting from the latest millisecond seen; once its
 * sequence is used up they move on to the next millisecond, so an id is never issued twice (a
 * repeated id would fail every audit commit, and with it every token request, until the clock
 * caught up).
 */
export function newEventId(nowMs: number): string {
  if (nowMs > lastMs) {
    lastMs = nowMs;
    sequence = 0;
  } else if (sequence < 0xffff) {
    sequence += 1;
  } else {
    lastMs += 1;
    sequence = 0;
  }
  return `${lastMs.toString(16).padStart(12, '0')}${sequence.toString(16).padStart(4, '0')}${PROCESS_SUFFIX}`;
}

const SECRET = /tsec_[0-9a-f]{16}_[A-Za-z0-9_-]*/g;
const JWT = /eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*/g;
// Control and format characters (C0, C1, bidirectional overrides, zero widths) and the Unicode line
// separators: each could forge how a record looks in a terminal or split it in a line-based shipper.
// Lone surrogates too: not text, and each database stores them differently.
const CONTROL = /[\p{Cc}\p{Cf}\p{Cs}\u2028\u2029]/gu;
const HIGH_SURROGATE_LAST = /[\uD800-\uDBFF]$/;

/**
 * Makes a caller-supplied value safe to record: anything shaped like a Tessera secret or a JWT is
 * masked (a workload that swaps client_id and client_secret must not get its secret logged), control
 * characters are replaced, and the length is bounded. Empty and non-string values become null.
 */
export function scrub(value: unknown, max = 256): string | null {
  if (typeof value !== 'string' || value === '') return null;
  const safe = value.replace(SECRET, 'tsec_[redacted]').replace(JWT, '[jwt redacted]').replace(CONTROL, '\uFFFD').slice(0, max);
  // Nor may the cut leave one, between the halves of a pair.
  return HIGH_SURROGATE_LAST.test(safe) ? safe.slice(0, -1) : safe;
}

interface Pending {
  readonly row: NewAuditEventRow;
  readonly resolve: () => void;
  readonly reject: (err: unknown) => void;
}

// Rows per transaction: 17 columns each stays far below SQLite's bound-parameter limit.
const MAX_BATCH = 500;

/**
 * Group commit: rows recorded while a transaction is being written wait and go together in the
 * next one, so many requests share one durable commit (one fsync) instead of paying one each.
 * Every caller still waits until its own row is committed.
 */
export class AuditLog {
  #queue: Pending[] = [];
  #writer: Promise<void> | undefined;
  readonly #commitListeners: ((seconds: number, ok: boolean) => void)[] = [];
  #lastFailureMs: number | undefined;

  constructor(
    private readonly commit: AuditWriter,
    private readonly log: Logger,
    private readonly clock: Clock,
  ) {}

  /** Resolves once the row is committed; rejects if it could not be. */
  record(event: AuditEvent): Promise<void> {
    const row = this.#row(event);
    return new Promise<void>((resolve, reject) => {
      this.#queue.push({ row, resolve, reject });
      this.#writer ??= this.#write();
    });
  }

  /**
   * Writes the row in the caller's transaction, so that an operator's change and its audit row
   * commit or fail together. Resolves to the row's log line, to be written once that transaction
   * has committed.
   */
  async recordIn(trx: Transaction<Database>, event: AuditEvent): Promise<() => void> {
    const row = this.#row(event);
    await trx.insertInto('audit_events').values(row).execute();
    return () => this.log.info({ audit: row }, row.type);
  }

  #row(event: AuditEvent): NewAuditEventRow {
    const occurredAt = this.clock.now();
    return { id: newEventId(occurredAt), occurred_at: occurredAt, ...event, details: event.details ?? null };
  }

  /** Resolves when every row recorded so far is committed (or failed): for shutdown. */
  async flush(): Promise<void> {
    while (this.#writer) await this.#writer;
  }

  get pending(): number {
    return this.#queue.length;
  }

  /** Called after each group commit with its duration and whether it succeeded (metrics). */
  onCommit(listener: (seconds: number, ok: boolean) => void): void {
    this.#commitListeners.push(listener);
  }

  /** When the latest group commit failed, if no commit has succeeded since (readiness). */
  get failingSince(): number | undefined {
    return this.#lastFailureMs;
  }

  #committed(started: number, ok: boolean): void {
    this.#lastFailureMs = ok ? undefined : this.clock.now();
    const seconds = (performance.now() - started) / 1000;
    for (const listener of this.#commitListeners) listener(seconds, ok);
  }

  async #write(): Promise<void> {
    // Let the requests being handled in this turn of the event loop join the first batch.
    await new Promise<void>((resolve) => setImmediate(resolve));
    try {
      while (this.#queue.length > 0) {
        const batch = this.#queue.splice(0, MAX_BATCH);
        const started = performance.now();
        try {
          await this.commit(batch.map((p) => p.row));
        } catch (err) {
          this.#committed(started, false);
          for (const pending of batch) pending.reject(err);
          continue;
        }
        this.#committed(started, true);
        for (const { row, resolve } of batch) {
          this.log.info({ audit: row }, row.type);
          resolve();
        }
      }
    } finally {
      this.#writer = undefined;
    }
  }
}