/** Finding a token's issuance by jti (the admin API revokes tokens by jti). Frozen in time. */
import type { Kysely } from 'kysely';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyDb = Kysely<any>;

export async function up(db: AnyDb): Promise<void> {
  await db.schema.createIndex('audit_events_jti').on('audit_events').column('jti').execute();
}

export async function down(db: AnyDb): Promise<void> {
  await db.schema.dropIndex('audit_events_jti').execute();
}
