/** The audit writer thread (audit-writer.ts): commits each batch it receives, in order. */
import { parentPort, workerData } from 'node:worker_threads';

import { writeLastUse } from '../clients/last-use.js';
import { openDatabase } from '../db/database.js';
import { writeAuditRows, type AuditBatch, type AuditBatchResult } from './audit-writer.js';

const { databasePath } = workerData as { databasePath: string };
const db = openDatabase(databasePath);
const [writeRows, writeUses] = [writeAuditRows(db), writeLastUse(db)];
let previous = Promise.resolve();

parentPort!.on('message', (batch: AuditBatch) => {
  // One batch at a time, answered in the order received.
  previous = previous.then(async () => {
    const result: AuditBatchResult = await ('rows' in batch ? writeRows(batch.rows) : writeUses(batch.lastUse)).then(
      () => ({ ok: true }),
      (err: unknown) => ({ ok: false, error: err instanceof Error ? err.message : String(err) }),
    );
    parentPort!.postMessage(result);
  });
});
