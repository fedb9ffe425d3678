/**
 * Limit state in PostgreSQL, so that instances behind one issuer count together: each failed
 * authentication and each token taken is one atomic upsert. What an instance learns is applied to
 * its in-memory back-off (backoff.ts), which every request checks without a query; a new lock-out is
 * also announced to the other instances (db/notifications.ts), which then read the key's count
 * here, and an instance that misses the announcement locks the key at the next failure it sees.
 */
import { sql } from 'kysely';

import type { Db } from '../db/database.js';

export class SharedLimitState {
  constructor(private readonly db: Db) {}

  /** Counts one failure for `key`; resolves to the failures within the window, this one included. */
  async failed(key: string, nowMs: number, windowMs: number): Promise<number> {
    const { rows } = await sql<{ failures: number }>`
      insert into limit_failures as f (key, failures, last_failure_ms) values (${key}, 1, ${nowMs})
      on conflict (key) do update set
        failures = case when f.last_failure_ms < ${nowMs - windowMs} then 1 else f.failures + 1 end,
        last_failure_ms = case when f.last_failure_ms < ${nowMs - windowMs} then ${nowMs} else f.last_failure_ms end
      returning failures`.execute(this.db);
    return rows[0]!.failures;
  }

  /** The failures counted within the window for each of `keys` that has any. */
  async failures(keys: readonly string[], nowMs: number, windowMs: number): Promise<Map<string, number>> {
    const rows = await this.db
      .selectFrom('limit_failures')
      .select(['key', 'failures'])
      .where('key', 'in', keys)
      .where('last_failure_ms', '>=', nowMs - windowMs)
      .execute();
    return new Map(rows.map((r) => [r.key, Number(r.failures)]));
  }

  /**
   * Takes one token from the client's bucket of `perMinute` (refilled continuously, as token-rate.ts
   * does in memory); resolves to 0 when allowed, else the whole seconds until a token is available.
   */
  async takeToken(clientId: string, perMinute: number, nowMs: number): Promise<number> {
    const refilled = sql`least(${perMinute}::float8, b.tokens + greatest(0, ${nowMs} - b.updated_ms) * ${perMinute}::float8 / 60000)`;
    const { rows } = await sql<{ tokens: number; admitted: number }>`
      insert into token_buckets as b (client_id, tokens, updated_ms, admitted) values (${clientId}, ${perMinute - 1}, ${nowMs}, 1)
      on conflict (client_id) do update set
        tokens = case when ${refilled} >= 1 then ${refilled} - 1 else ${refilled} end,
        admitted = case when ${refilled} >= 1 then 1 else 0 end,
        updated_ms = greatest(b.updated_ms, ${nowMs})
      returning tokens, admitted`.execute(this.db);
    const { tokens, admitted } = rows[0]!;
    return admitted === 1 ? 0 : Math.max(1, Math.ceil(((1 - tokens) * 60) / perMinute));
  }

  /** Drops failures older than the window: they no longer count. */
  async prune(nowMs: number, windowMs: number): Promise<number> {
    const result = await this.db.deleteFrom('limit_failures').where('last_failure_ms', '<', nowMs - windowMs).executeTakeFirst();
    return Number(result.numDeletedRows);
  }
}
