/**
 * Abuse-limit state shared by instances on PostgreSQL (src/limits/shared.ts): failed
 * authentications per key, and each client's token bucket. A single SQLite server keeps this state
 * in memory; the tables exist there too so that both dialects have one schema. Frozen in time.
 */
import type { Kysely } from 'kysely';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyDb = Kysely<any>;

export async function up(db: AnyDb): Promise<void> {
  await db.schema
    .createTable('limit_failures')
    .addColumn('key', 'text', (c) => c.primaryKey())
    .addColumn('failures', 'integer', (c) => c.notNull())
    .addColumn('last_failure_ms', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('limit_failures_last_failure_ms').on('limit_failures').column('last_failure_ms').execute();

  await db.schema
    .createTable('token_buckets')
    .addColumn('client_id', 'text', (c) => c.primaryKey())
    .addColumn('tokens', 'double precision', (c) => c.notNull())
    .addColumn('updated_ms', 'bigint', (c) => c.notNull())
    // 1 when the last take found a token, 0 when it was refused.
    .addColumn('admitted', 'integer', (c) => c.notNull())
    .execute();
}

export async function down(db: AnyDb): Promise<void> {
  await db.schema.dropTable('token_buckets').execute();
  await db.schema.dropTable('limit_failures').execute();
}
