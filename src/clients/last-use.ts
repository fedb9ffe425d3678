/**
 * When each secret was last used, for operators retiring unused ones. Recorded at most once a
 * minute per secret (authenticate-client.ts), and written in batches off the request's path: on
 * SQLite by the audit writer thread (audit-writer.ts), since better-sqlite3 would otherwise write,
 * fsync and wait for the write lock on the event loop, holding every request meanwhile.
 */
import { sql } from 'kysely';

import type { Db } from '../db/database.js';
import type { Logger } from '../log.js';

/** Writes when each secret was last used (epoch seconds). */
export type LastUseWriter = (uses: readonly (readonly [secretId: string, at: number])[]) => Promise<void>;

/** Rows per statement: half SQLite's limit of 500 terms in one compound select. */
const BATCH_ROWS = 250;

/**
 * One statement per 250 uses, each its own transaction. On PostgreSQL that transaction waits its
 * turn for the write lock (db/database.ts): outside it, the row locks this update takes, in its own
 * order, deadlock against a secret rotation, or against another instance's batch.
 */
export function writeLastUse(db: Db): LastUseWriter {
  return async (uses) => {
    for (let start = 0; start < uses.length; start += BATCH_ROWS) {
      const rows = uses.slice(start, start + BATCH_ROWS).map(([secretId, at]) => sql`select ${secretId} as id, cast(${at} as bigint) as at`);
      await db
        .transaction()
        .execute((trx) => sql`update client_secrets set last_used_at = used.at from (${sql.join(rows, sql` union all `)}) as used where client_secrets.id = used.id`.execute(trx));
    }
  };
}

/** How long a recorded use waits for others to join its write. */
const BATCH_DELAY_MS = 1000;

export class LastUse {
  #pending = new Map<string, { readonly clientId: string; readonly at: number }>();
  #writing: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly write: LastUseWriter,
    /** Called for each client whose secret's use is written: its cached record is out of date. */
    private readonly written: (clientId: string) => void,
    private readonly log: Logger,
  ) {}

  record(clientId: string, secretId: string, at: number): void {
    this.#pending.set(secretId, { clientId, at });
    if (this.#timer !== undefined) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.flush();
    }, BATCH_DELAY_MS).unref();
  }

  /** Writes every use recorded so far; for shutdown and tests. A failed write is logged, not retried. */
  async flush(): Promise<void> {
    while (this.#writing) await this.#writing;
    if (this.#pending.size === 0) return;
    const batch = this.#pending;
    this.#pending = new Map();
    this.#writing = this.write([...batch].map(([secretId, { at }]) => [secretId, at] as const))
      .then(
        () => {
          for (const clientId of new Set([...batch.values()].map((use) => use.clientId))) this.written(clientId);
        },
        (err: unknown) => this.log.warn({ err, secrets: batch.size }, 'last use of secrets not recorded'),
      )
      .finally(() => (this.#writing = undefined));
    await this.#writing;
  }
}
