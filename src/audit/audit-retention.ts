/**
 * Audit retention: rows older than AUDIT_RETENTION_DAYS are deleted, hourly by the server and on
 * demand by `tessera audit prune`. Deletion runs in bounded batches, each its own short statement:
 * on SQLite every batch holds the write lock the token endpoint's audit commits wait for (and, in
 * the server, blocks the event loop: better-sqlite3 is synchronous), so no batch may take long, and
 * each is followed by a pause at least four times as long, in which those commits get in. Every run
 * that deletes anything records one `audit.pruned` row saying how many rows, older than what, and
 * who asked, so the deletion itself is accountable.
 */
import { setTimeout as sleep } from 'node:timers/promises';

import type { Clock } from '../clock.js';
import type { Db } from '../db/database.js';
import type { Logger } from '../log.js';
import { auditEvent, type AuditLog } from './audit-log.js';

/** Rows per DELETE: about 20 ms of write lock on SQLite, fsync included (measured on a small VM). */
export const PRUNE_BATCH = 500;
/**
 * Least pause between batches, so waiting writers (the audit writer thread, the CLI) take the lock:
 * longer than the 25 ms between SQLite's busy-handler retries, so a waiting writer gets a turn.
 */
const PAUSE_MS = 30;
/** And at least this many times the batch's own duration: pruning takes at most a fifth of the time. */
const PAUSE_FACTOR = 4;
const DAY_MS = 86_400_000;
const EVERY_MS = 60 * 60 * 1000;

export interface PruneOptions {
  /** Rows that occurred more than this many days ago are deleted; at least 1. */
  readonly olderThanDays: number;
  /** Who asked, recorded in the audit.pruned row: `cli`, `scheduler`. */
  readonly actor: string;
  readonly batchSize?: number | undefined;
  /** Least pause between batches, ms (tests set 0). */
  readonly pauseMs?: number | undefined;
  /** Stops after the batch in progress (the rows deleted so far are still accounted for). */
  readonly signal?: AbortSignal;
}

export interface PruneResult {
  readonly deleted: number;
  /** Epoch milliseconds: rows that occurred before this were deleted. */
  readonly cutoff: number;
}

/** Deletes, oldest first, every audit row older than the cutoff; records audit.pruned if any went. */
export async function pruneAuditEvents(db: Db, auditLog: AuditLog, clock: Clock, options: PruneOptions): Promise<PruneResult> {
  if (!Number.isInteger(options.olderThanDays) || options.olderThanDays < 1) throw new RangeError('olderThanDays must be a whole number of at least 1');
  const batchSize = options.batchSize ?? PRUNE_BATCH;
  const pauseMs = options.pauseMs ?? PAUSE_MS;
  const cutoff = clock.now() - options.olderThanDays * DAY_MS;
  let deleted = 0;
  try {
    while (!options.signal?.aborted) {
      const started = performance.now();
      const result = await db
        .deleteFrom('audit_events')
        .where('id', 'in', (eb) => eb.selectFrom('audit_events').select('id').where('occurred_at', '<', cutoff).orderBy('occurred_at').limit(batchSize))
        .executeTakeFirst();
      const count = Number(result.numDeletedRows);
      deleted += count;
      if (count < batchSize) break;
      // Rejects only when stopped, which the loop's condition then sees.
      await sleep(Math.max(pauseMs, PAUSE_FACTOR * (performance.now() - started)), undefined, { signal: options.signal }).catch(() => undefined);
    }
  } finally {
    // Also when a batch failed or the run was stopped: what was deleted is accounted for.
    if (deleted > 0) {
      await auditLog.record(
        auditEvent({
          type: 'audit.pruned',
          outcome: 'success',
          details: { actor: options.actor, deleted, cutoff: new Date(cutoff).toISOString(), older_than_days: options.olderThanDays },
        }),
      );
    }
  }
  return { deleted, cutoff };
}

/**
 * With a retention of at least one day, prunes now and then every hour (never two runs at once).
 * The returned function stops it; it resolves once a run in progress has finished its batch and
 * recorded its audit.pruned row, so call it before the audit log is flushed at shutdown.
 */
export function startAuditPruner(
  db: Db,
  auditLog: AuditLog,
  clock: Clock,
  retentionDays: number,
  log: Logger,
  options: { everyMs?: number; batchSize?: number; pauseMs?: number } = {},
): () => Promise<void> {
  if (retentionDays < 1) return () => Promise.resolve();
  const stop = new AbortController();
  let running: Promise<void> | undefined;
  const prune = () => {
    if (running || stop.signal.aborted) return;
    running = pruneAuditEvents(db, auditLog, clock, {
      olderThanDays: retentionDays,
      actor: 'scheduler',
      batchSize: options.batchSize,
      pauseMs: options.pauseMs,
      signal: stop.signal,
    })
      .then(
        // The audit.pruned row is mirrored to the log already.
        () => undefined,
        (err: unknown) => log.error({ err }, 'pruning the audit log failed'),
      )
      .finally(() => {
        running = undefined;
      });
  };
  prune();
  const timer = setInterval(prune, options.everyMs ?? EVERY_MS).unref();
  return async () => {
    stop.abort();
    clearInterval(timer);
    await running;
  };
}
