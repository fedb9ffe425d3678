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

export interface ListenTiming {
  /** How often the listening connection is asked a trivial query. */
  readonly heartbeatMs: number;
  /** How long an answer may take before the connection is taken for lost. */
  readonly timeoutMs: number;
}

/**
 * A LISTEN connection only receives, so one dropped silently (a NAT's or firewall's idle timeout)
 * would be noticed by TCP keepalive after hours of OS defaults; a query every few seconds notices
 * it within seconds, and `missed` then tells the caches.
 */
const HEARTBEAT: ListenTiming = { heartbeatMs: 5_000, timeoutMs: 5_000 };

/** Sends `payload` on `channel`; a failure is logged, not thrown: the slow path still applies. */
export async function notify(db: Db, channel: string, payload: string, log: Logger): Promise<void> {
  await sql`select pg_notify(${channel}, ${payload})`.execute(db).catch((err: unknown) => log.warn({ err, channel }, 'notification not sent'));
}

export type Handlers = Readonly<Record<string, (payload: string) => void>>;

/** Resolves once listening (a database that cannot be reached at start-up is an error); the returned function stops. */
export async function listen(databaseUrl: string, handlers: Handlers, missed: () => void, log: Logger, timing: ListenTiming = HEARTBEAT): Promise<() => Promise<void>> {
  if (dialectOf(databaseUrl) !== 'postgres') return () => Promise.resolve();
  let reconnecting = false;
  let stopped = false;
  let current: pg.Client | undefined;
  let retry: NodeJS.Timeout | undefined;
  let heartbeat: NodeJS.Timeout | undefined;

  const connect = async (): Promise<void> => {
    // A connect timeout, bounded queries and the heartbeat: a server that accepts but never
    // answers, or a connection dropped silently, must end in `lost`, not in silence.
    const client = new pg.Client({ connectionString: databaseUrl, keepAlive: true, keepAliveInitialDelayMillis: 10_000, connectionTimeoutMillis: 10_000 });
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
      clearInterval(heartbeat);
      client.end().catch(() => {});
      missed();
      if (stopped || !reconnecting) return;
      log.warn({ err }, 'notification listener lost its connection; reconnecting');
      retry = setTimeout(() => void connect().catch(() => {}), RECONNECT_DELAY_MS).unref();
    };
    client.on('error', lost);
    client.on('end', () => lost());
    current = client;
    const bounded = async (query: string): Promise<void> => {
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${timing.timeoutMs} ms`)), timing.timeoutMs);
      });
      try {
        await Promise.race([client.query(query), timedOut]);
      } finally {
        clearTimeout(timer);
      }
    };
    try {
      await client.connect();
      for (const channel of Object.keys(handlers)) await bounded(`listen ${pg.escapeIdentifier(channel)}`);
    } catch (err) {
      lost(err as Error);
      throw err;
    }
    heartbeat = setInterval(() => void bounded('select 1').catch((err: Error) => lost(err)), timing.heartbeatMs).unref();
    // Anything sent while not listening is unknown.
    missed();
  };

  await connect();
  reconnecting = true;
  return async () => {
    stopped = true;
    clearTimeout(retry);
    clearInterval(heartbeat);
    const client = current;
    current = undefined;
    // A connection dropped silently would never confirm its end: a shutdown must not wait for it.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([client?.end().catch(() => {}), new Promise((resolve) => (timer = setTimeout(resolve, timing.timeoutMs)))]);
    clearTimeout(timer);
  };
}
