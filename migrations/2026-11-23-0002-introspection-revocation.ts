/**
 * Introspection rights per client, wholesale token revocation per client, the revocation list by
 * jti, and event-specific details in the audit log. Frozen in time: never imports src/.
 */
import { sql, type Kysely } from 'kysely';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyDb = Kysely<any>;

export async function up(db: AnyDb): Promise<void> {
  await db.schema
    .alterTable('clients')
    .addColumn('introspection_audiences', 'text', (c) => c.notNull().defaultTo(sql`'[]'`))
    .execute();
  await db.schema.alterTable('clients').addColumn('tokens_revoked_before', 'bigint').execute();

  await db.schema
    .createTable('revoked_tokens')
    .addColumn('jti', 'text', (c) => c.primaryKey())
    .addColumn('client_id', 'text', (c) => c.notNull())
    .addColumn('expires_at', 'bigint', (c) => c.notNull())
    .addColumn('revoked_at', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('revoked_tokens_expires_at').on('revoked_tokens').column('expires_at').execute();

  await db.schema.alterTable('audit_events').addColumn('details', 'text').execute();
}

export async function down(db: AnyDb): Promise<void> {
  await db.schema.alterTable('audit_events').dropColumn('details').execute();
  await db.schema.dropTable('revoked_tokens').execute();
  await db.schema.alterTable('clients').dropColumn('tokens_revoked_before').execute();
  await db.schema.alterTable('clients').dropColumn('introspection_audiences').execute();
}
