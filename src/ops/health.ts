/**
 * Probes for process managers and load balancers: neither is audited nor rate-limited, and both
 * answer HEAD as GET (http/routes.ts).
 *
 *   GET /healthz  liveness: the process answers. No database access, so a database outage does not
 *                 get healthy processes restarted.
 *   GET /readyz   readiness: the database answers a trivial query, every migration this code knows
 *                 is recorded as applied, an active signing key is loaded, and libuv's thread pool,
 *                 which signs every token, runs a trivial job; and the audit log's latest commit
 *                 did not fail in the last 10 s (a token is only released with its row). Otherwise 503, naming the failing
 *                 check with a short generic reason; the cause goes to the log only. The checks
 *                 share one deadline, so a hung database or pool gets a 503, not a hung probe (on
 *                 SQLite a query runs on the event loop: the deadline bounds the wait for the connection).
 */
import type { Middleware } from 'koa';
import { DEFAULT_MIGRATION_TABLE, sql } from 'kysely';

import { migrations } from '../../migrations/index.js';
import type { AuditLog } from '../audit/audit-log.js';
import type { Clock } from '../clock.js';
import type { Db } from '../db/database.js';
import { requestIdOf } from '../http/request-context.js';
import type { KeyManager } from '../keys/key-manager.js';
import type { Logger } from '../log.js';

export const HEALTH_PATH = '/healthz';
export const READY_PATH = '/readyz';

/** How long the database may take to answer a readiness probe. */
const READINESS_TIMEOUT_MS = 2000;

export type CheckName = 'database' | 'migrations' | 'signing_key' | 'thread_pool' | 'audit_log';

/**
 * How long a failed audit commit keeps an instance not ready. Only requests commit audit rows, so
 * an instance taken out of rotation would never learn that commits work again: after this it is
 * ready again, and the next failing commit takes it out again.
 */
export const AUDIT_FAILURE_HOLD_MS = 10_000;
export type CheckResult = 'ok' | `failing: ${string}`;

export interface Readiness {
  readonly ready: boolean;
  readonly checks: Record<CheckName, CheckResult>;
}

export interface ReadinessDeps {
  readonly db: Db;
  readonly keys: Pick<KeyManager, 'current'>;
  readonly auditLog: Pick<AuditLog, 'failingSince'>;
  readonly clock: Clock;
  readonly log: Logger;
  readonly timeoutMs?: number;
}

class TimedOut extends Error {}

function within<T>(deadline: number, work: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TimedOut()), Math.max(0, deadline - performance.now()));
  });
  // A query still running when the deadline passes is left to finish or fail on its own.
  work.catch(() => {});
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}

/** A job for libuv's pool: WebCrypto runs digests there, as it runs the signatures. */
const POOL_PROBE = new Uint8Array(1);

export async function checkReadiness({ db, keys, auditLog, clock, log, timeoutMs = READINESS_TIMEOUT_MS }: ReadinessDeps, requestId: string | null = null): Promise<Readiness> {
  const deadline = performance.now() + timeoutMs;
  const failed = (check: CheckName, reason: string, err?: unknown): CheckResult => {
    log.warn({ check, err, request_id: requestId }, 'readiness check failed');
    return `failing: ${reason}`;
  };
  const dbFailure = (check: CheckName, err: unknown): CheckResult => failed(check, err instanceof TimedOut ? 'timeout' : 'query failed', err instanceof TimedOut ? undefined : err);
  // The pool may have one thread (main.cts): a hung host-name lookup or network file read there
  // holds every token's signature. Started first, it waits alongside the database checks.
  const poolAnswer = within(deadline, crypto.subtle.digest('SHA-256', POOL_PROBE));

  let database: CheckResult = 'ok';
  let migrationsCheck: CheckResult = 'ok';
  try {
    await within(deadline, sql`select 1`.execute(db));
  } catch (err) {
    database = dbFailure('database', err);
  }
  if (database !== 'ok') {
    migrationsCheck = 'failing: database unavailable';
  } else {
    try {
      // The table db/migrate.ts records in; on PostgreSQL the search_path finds it, as it does there.
      const { rows } = await within(deadline, sql<{ name: string }>`select name from ${sql.table(DEFAULT_MIGRATION_TABLE)}`.execute(db));
      const applied = new Set(rows.map((r) => r.name));
      // Rows this code does not know are fine: a newer instance, mid-upgrade, may have applied them.
      const pending = Object.keys(migrations).filter((name) => !applied.has(name)).length;
      if (pending > 0) migrationsCheck = failed('migrations', `${pending} not applied`);
    } catch (err) {
      migrationsCheck = dbFailure('migrations', err);
    }
  }

  let signingKey: CheckResult = 'ok';
  try {
    const active = keys.current.active;
    if (active.state !== 'active' || active.privateJwk === undefined) signingKey = failed('signing_key', 'no active key');
  } catch (err) {
    signingKey = failed('signing_key', 'no active key', err);
  }

  let threadPool: CheckResult = 'ok';
  try {
    await poolAnswer;
  } catch (err) {
    threadPool = err instanceof TimedOut ? failed('thread_pool', 'timeout') : failed('thread_pool', 'job failed', err);
  }

  const failedAt = auditLog.failingSince;
  const audit: CheckResult = failedAt !== undefined && clock.now() - failedAt < AUDIT_FAILURE_HOLD_MS ? failed('audit_log', 'commits failing') : 'ok';
  const checks = { database, migrations: migrationsCheck, signing_key: signingKey, thread_pool: threadPool, audit_log: audit };
  return { ready: Object.values(checks).every((c) => c === 'ok'), checks };
}

export const healthz: Middleware = function healthz(ctx) {
  ctx.set('Cache-Control', 'no-store');
  ctx.body = { status: 'ok' };
};

/** How long one readiness result answers every probe: a flood of probes costs one check per second. */
const READINESS_REUSE_MS = 1000;

export function readyz(deps: ReadinessDeps): Middleware {
  // /readyz is public and unauthenticated: concurrent probes share one check, and its result is
  // reused for a second, so callers cannot drive database work (or queue it behind a slow database).
  let current: { readonly result: Promise<Readiness>; settledAt?: number } | undefined;
  const check = (requestId: string | null): Promise<Readiness> => {
    if (current && (current.settledAt === undefined || deps.clock.now() - current.settledAt < READINESS_REUSE_MS)) return current.result;
    const entry: { result: Promise<Readiness>; settledAt?: number } = { result: checkReadiness(deps, requestId) };
    void entry.result.finally(() => (entry.settledAt = deps.clock.now()));
    current = entry;
    return entry.result;
  };
  return async function readyz(ctx) {
    const { ready, checks } = await check(requestIdOf(ctx));
    ctx.set('Cache-Control', 'no-store');
    ctx.status = ready ? 200 : 503;
    ctx.body = { status: ready ? 'ready' : 'not_ready', checks };
  };
}
