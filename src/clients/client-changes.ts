/**
 * Client changes reach every instance's caches. On PostgreSQL a change is announced on one channel
 * that every server listens to (db/notifications.ts), so a disabled client or a revoked secret is
 * refused everywhere within milliseconds; the record cache's check of the change counter, every
 * CLIENT_CACHE_TTL, bounds the delay when a notification is lost, and a listener that may have
 * missed some clears its cache. On SQLite there is one server per file: it invalidates its own
 * cache, and a change the CLI makes applies within the TTL.
 */
import { dialectOf } from '../config.js';
import type { Db } from '../db/database.js';
import { notify, type Handlers } from '../db/notifications.js';
import type { Logger } from '../log.js';
import type { ClientRecords } from './client-records.js';

const CHANNEL = 'tessera_client_changed';

/** What the client service calls after a committed change: the local cache, then the other instances. */
export function clientChangeAnnouncer(
  databaseUrl: string,
  db: Db,
  local: (clientId: string) => void,
  log: Logger,
): (clientId: string) => Promise<void> {
  const onPostgres = dialectOf(databaseUrl) === 'postgres';
  return async (clientId) => {
    local(clientId);
    if (onPostgres) await notify(db, CHANNEL, clientId, log);
  };
}

/** The listener's side: forget the client named. */
export const clientChangeHandlers = (records: ClientRecords): Handlers => ({ [CHANNEL]: (clientId) => records.invalidate(clientId) });
