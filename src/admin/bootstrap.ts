/**
 * First start: with an empty database (no client was ever created), Tessera creates one admin
 * client so the admin API can be reached at all. Its secret is returned to server.ts, which prints
 * it once on the console; it is never logged or stored in plaintext.
 */
import { createClient, type ClientServiceDeps, type CreatedClient } from '../clients/client.service.js';
import { exclusively } from '../db/database.js';
import { ADMIN_READ, ADMIN_WRITE, adminAudience } from './authorize.js';

/** Settings that make a client an admin client; the CLI's --admin uses the same. */
export function adminClientSettings(issuer: string) {
  return { audience: [adminAudience(issuer)], scope: `${ADMIN_READ} ${ADMIN_WRITE}` };
}

/** Instances starting together on one empty PostgreSQL database create one admin between them. */
export function bootstrapAdmin(deps: ClientServiceDeps, issuer: string): Promise<CreatedClient | undefined> {
  return exclusively(deps.db, () => bootstrapOnce(deps, issuer));
}

async function bootstrapOnce(deps: ClientServiceDeps, issuer: string): Promise<CreatedClient | undefined> {
  const everCreated = await deps.db
    .selectFrom('audit_events')
    .select('id')
    .where('type', '=', 'client.created')
    .limit(1)
    .executeTakeFirst();
  const anyClient = await deps.db.selectFrom('clients').select('client_id').limit(1).executeTakeFirst();
  if (everCreated || anyClient) return undefined;
  return createClient(deps, { client_name: 'bootstrap-admin', description: 'Created on first start', ...adminClientSettings(issuer) });
}
