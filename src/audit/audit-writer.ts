/**
 * Where the audit log's batches are committed. In-process for tests, the CLI and dialects whose
 * driver is asynchronous anyway; for the server on a SQLite file, a worker thread with its own
 * connection, because better-sqlite3 inserts and fsyncs synchronously and would otherwise block the
 * event loop for every batch (about 1.4 ms per 20 rows here, measured in BENCHMARKS.md). The same
 * thread writes the token path's other writes: when secrets were last used (clients/last-use.ts).
 */
import { Worker } from 'node:worker_threads';

import type { Db } from '../db/database.js';
import type { LastUseWriter } from '../clients/last-use.js';
import type { NewAuditEventRow } from './audit-event.table.js';

/** Commits the rows in one transaction; resolves once they are durable. */
export type AuditWriter = (rows: NewAuditEventRow[]) => Promise<void>;

export function writeAuditRows(db: Db): AuditWriter {
  return async (rows) => {
    await db.insertInto('audit_events').values(rows).execute();
  };
}

/** Messages between the thread and its owner. */
export type AuditBatch = { readonly rows: NewAuditEventRow[] } | { readonly lastUse: Parameters<LastUseWriter>[0] };
export type AuditBatchResult = { readonly ok: true } | { readonly ok: false; readonly error: string };

interface Waiting {
  readonly resolve: () => void;
  readonly reject: (err: Error) => void;
}

/**
 * A worker thread that owns a second connection to the SQLite file and commits batches in the
 * order they are sent. If the thread dies, the batches it held fail (their callers answer 500 and
 * release no token) and the next batch starts a new thread.
 */
export class AuditWriterThread {
  #worker: Worker | undefined;
  readonly #waiting: Waiting[] = [];

  constructor(private readonly databasePath: string) {}

  readonly write: AuditWriter = (rows) => this.#send({ rows });

  readonly writeLastUse: LastUseWriter = (lastUse) => this.#send({ lastUse });

  #send(batch: AuditBatch): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#waiting.push({ resolve, reject });
      this.#thread().postMessage(batch);
    });
  }

  /** Stops the thread; call after the audit log is flushed. */
  async close(): Promise<void> {
    const worker = this.#worker;
    this.#worker = undefined;
    await worker?.terminate();
  }

  #thread(): Worker {
    if (this.#worker) return this.#worker;
    const worker = new Worker(new URL('./audit-writer.thread.js', import.meta.url), { workerData: { databasePath: this.databasePath } });
    worker.on('message', (result: AuditBatchResult) => {
      const waiting = this.#waiting.shift();
      if (result.ok) waiting?.resolve();
      else waiting?.reject(new Error(`audit batch not committed: ${result.error}`));
    });
    const fail = (err: Error) => {
      if (this.#worker !== worker) return;
      this.#worker = undefined;
      for (const waiting of this.#waiting.splice(0)) waiting.reject(err);
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`audit writer thread exited with code ${code}`)));
    this.#worker = worker;
    return worker;
  }
}
