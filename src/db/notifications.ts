/**
 * PostgreSQL NOTIFY between instances: `notify` sends on a channel, `listen` keeps one connection
 * open that LISTENs to several channels and reconnects a second after losing it. Notifications are
 * a fast path only: whatever they carry must also reach an instance some slower way (a cache TTL,
 * the shared table itself), since one sent while a listener reconnects is lost; `missed` is called
 * whenever that may have happened. On SQLite (one server per file) both do nothing.
 */
import { sql } from 'kysely';
import pg from 'pg';

import { dialectOf } from '../config.js';
import type { Logger } from '../log.js';
import type { Db } from './database.js';

const RECONNECT_DELAY_MS = 1000;

/** Sends `payload` on `channel`; a failure is logged, not thrown: the slow path still applies. */
export async function notify(db: Db, channel: string, payload: string, log: Logger): Promise<void> {
  await sql`select pg_notify(${channel}, ${payload})`.execute(db).catch((err: unknown) => log.warn({ err, channel }, 'notification not sent'));
}

export type Handlers = Readonly<Record<string, (payload: string) => void>>;

/** Resolves once listening (a database that cannot be reached at start-up is an error); the returned function stops. */
export async function listen(databaseUrl: string, handlers: Handlers, missed: () => void, log: Logger): Promise<() => Promise<void>> {
  if (dialectOf(databaseUrl) !== 'postgres') return () => Promise.resolve();
  let reconnecting = false;
  let stopped = false;
  let current: pg.Client | undefined;
  let retry: NodeJS.Timeout | undefined;

  const connect = async (): Promise<void> => {
    // keepAlive and a connect timeout: a connection dropped silently (a NAT's idle timeout) or a
    // server that accepts but never answers must end in `lost`, not in silence.
    const client = new pg.Client({ connectionString: databaseUrl, keepAlive: true, connectionTimeoutMillis: 10_000 });
    client.on('notification', ({ channel, payload }) => {
      if (payload === undefined) return;
      // Any database user can NOTIFY: a payload a handler cannot read is logged, never thrown.
      try {
        handlers[channel]?.(payload);
      } catch (err) {
        log.warn({ err, channel }, 'unreadable notification ignored');
      }
    });
    const lost = (err?: Error) => {
      if (current !== client) return;
      current = undefined;
      client.end().catch(() => {});
      missed();
      if (stopped || !reconnecting) return;
      log.warn({ err }, 'notification listener lost its connection; reconnecting');
      retry = setTimeout(() => void connect().catch(() => {}), RECONNECT_DELAY_MS).unref();
    };
    client.on('error', lost);
    client.on('end', () => lost());
    current = client;
    try {
      await client.connect();
      for (const channel of Object.keys(handlers)) await client.query(`listen ${pg.escapeIdentifier(channel)}`);
    } catch (err) {
      lost(err as Error);
      throw err;
    }
    // Anything sent while not listening is unknown.
    missed();
  };

  await connect();
  reconnecting = true;
  return async () => {
    stopped = true;
    clearTimeout(retry);
    const client = current;
    current = undefined;
    await client?.end();
  };
}
