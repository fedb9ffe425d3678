/**
 * The database handle. SQLite (better-sqlite3) is the embedded default, PostgreSQL (pg) the choice
 * for several instances; every query goes through kysely, so business logic never knows which
 * dialect it talks to. Both run every write transaction one at a time, as SQLite must anyway: the
 * services can then read, check and write in one transaction without races on either dialect.
 */
import { chmodSync, closeSync, mkdirSync, openSync, rmSync, statSync } from 'node:fs';
import { dirname } from 'node:path';

import SQLite from 'better-sqlite3';
import {
  CompiledQuery,
  Kysely,
  PostgresAdapter,
  PostgresDialect,
  PostgresDriver,
  SqliteAdapter,
  SqliteDialect,
  SqliteDriver,
  type DatabaseConnection,
  type PostgresDialectConfig,
  type SqliteDatabase,
  type SqliteDialectConfig,
  type TransactionSettings,
  sql,
} from 'kysely';
import pg from 'pg';

import { dialectOf } from '../config.js';

import type { AuditEventTable } from '../audit/audit-event.table.js';
import type { ClientSecretTable, ClientsVersionTable, ClientTable } from '../clients/client.table.js';
import type { RevokedTokenTable } from '../introspection/revoked-token.table.js';
import type { LimitFailureTable, TokenBucketTable } from '../limits/limit.table.js';

export interface Database {
  clients: ClientTable;
  client_secrets: ClientSecretTable;
  clients_version: ClientsVersionTable;
  audit_events: AuditEventTable;
  revoked_tokens: RevokedTokenTable;
  limit_failures: LimitFailureTable;
  token_buckets: TokenBucketTable;
}

export type Db = Kysely<Database>;

/** Opens the database DATABASE_URL names: a SQLite file (created if needed; `:memory:` for tests) or PostgreSQL. */
export function openDatabase(url: string, options: { poolSize?: number } = {}): Db {
  return dialectOf(url) === 'postgres' ? openPostgres(url, options.poolSize ?? 10) : openSqlite(url);
}

function openSqlite(path: string): Db {
  if (path !== ':memory:') {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    // The file holds secret hashes and the audit log: owner-only from its first byte, whatever the
    // umask. SQLite gives its -wal and -shm files the same mode. A file made before (by an earlier
    // version, by hand) is made owner-only too, with its -wal and -shm.
    closeSync(openSync(path, 'a', 0o600));
    for (const file of [path, `${path}-wal`, `${path}-shm`]) ownerOnly(file);
  }
  const sqlite = new SQLite(path);
  // WAL lets readers run during the audit writer's commits; FULL makes each commit durable, since
  // a token is only released once its audit row is committed; the busy timeout absorbs a CLI
  // writing to the same file.
  sqlite.pragma('busy_timeout = 5000');
  useWal(sqlite);
  sqlite.pragma('synchronous = FULL');
  sqlite.pragma('foreign_keys = ON');
  return new Kysely<Database>({ dialect: new ImmediateTransactions({ database: withStatementCache(sqlite) }) });
}

function ownerOnly(file: string): void {
  let mode: number;
  try {
    mode = statSync(file).mode;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if ((mode & 0o077) !== 0) chmodSync(file, mode & 0o700);
}

/**
 * Switching a new file to WAL needs it to itself, and SQLite answers SQLITE_BUSY at once, without
 * its busy handler, while another process opens it too (a server and a CLI, two instances):
 * retried here for up to the busy timeout. A file already in WAL mode needs no lock.
 */
function useWal(sqlite: SQLite.Database): void {
  const pause = new Int32Array(new SharedArrayBuffer(4));
  for (let waited = 0; ; waited += 10) {
    try {
      sqlite.pragma('journal_mode = WAL');
      return;
    } catch (err) {
      if ((err as { code?: string }).code !== 'SQLITE_BUSY' || waited >= 5000) throw err;
      Atomics.wait(pause, 0, 0, 10);
    }
  }
}

/**
 * A consistent copy of a SQLite database, taken while servers write to it: SQLite's online backup.
 * A copy of the file alone would miss the commits still in its -wal file. The copy holds secret
 * hashes and the audit log, so it is owner-only; an existing file is never written over.
 */
export async function backupSqlite(path: string, destination: string): Promise<void> {
  const source = new SQLite(path, { readonly: true, fileMustExist: true });
  try {
    closeSync(openSync(destination, 'wx', 0o600));
    try {
      await source.backup(destination);
    } catch (err) {
      rmSync(destination, { force: true });
      throw err;
    }
  } finally {
    source.close();
  }
}

/**
 * An exclusive lock on a file, for processes sharing a directory (the signing keys): SQLite's
 * POSIX advisory lock, which the kernel releases when its holder exits, however it exits. So a
 * lock is never left behind by a crash, and none is ever judged dead by a guess (a pid, an age)
 * that could break a live one. The file is an empty database that holds nothing.
 */
export class FileLock {
  readonly #db: SQLite.Database;
  #held = false;

  constructor(path: string) {
    // Owner-only from its first byte. Only when the file does not exist yet: closing any other
    // descriptor of a file drops this process's POSIX locks on it, held by another FileLock.
    try {
      closeSync(openSync(path, 'wx', 0o600));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    // No busy timeout: better-sqlite3 would wait on the event loop; the caller polls instead.
    this.#db = new SQLite(path, { timeout: 0 });
  }

  /** True if the lock is now held by this object; false at once if another holder has it. */
  tryLock(): boolean {
    if (this.#held) throw new Error('lock already held');
    try {
      this.#db.exec('begin exclusive');
    } catch (err) {
      if ((err as { code?: string }).code === 'SQLITE_BUSY') return false;
      throw err;
    }
    this.#held = true;
    return true;
  }

  /** Releases the lock (if held) and the file. */
  close(): void {
    try {
      if (this.#held) this.#db.exec('rollback');
    } finally {
      this.#held = false;
      this.#db.close();
    }
  }
}

/**
 * kysely prepares every query it runs, and preparing costs more than running the hot path's small
 * queries. Statements are kept by SQL text (kysely puts values in parameters, so the text depends
 * only on a query's shape), the least recently used dropped beyond a bound: multi-row inserts make
 * one text per row count. kysely runs one query at a time on this connection, so a statement is
 * never in use when it is handed out again.
 */
const STATEMENT_CACHE_SIZE = 256;

function withStatementCache(sqlite: SQLite.Database): SqliteDatabase {
  const statements = new Map<string, SQLite.Statement>();
  return {
    prepare(sql) {
      let statement = statements.get(sql);
      if (statement === undefined) {
        statement = sqlite.prepare(sql);
        if (statements.size >= STATEMENT_CACHE_SIZE) statements.delete(statements.keys().next().value as string);
      } else {
        statements.delete(sql);
      }
      statements.set(sql, statement);
      return statement;
    },
    close: () => void sqlite.close(),
  };
}

/**
 * Transactions take the write lock when they begin (BEGIN IMMEDIATE). kysely's plain BEGIN defers
 * it to the first write, and in WAL mode a transaction that read first and then writes fails at
 * once with SQLITE_BUSY, without waiting out busy_timeout, whenever another connection (the audit
 * writer thread, the CLI) has written meanwhile. Every transaction here is there to write.
 *
 * SQLite's DDL is transactional, which kysely does not assume: said so, its migrator runs all
 * pending migrations in one such transaction, so a failed one leaves nothing half made and
 * processes migrating one file at once take turns (kysely takes no other lock on SQLite).
 */
class ImmediateTransactions extends SqliteDialect {
  constructor(private readonly config: SqliteDialectConfig) {
    super(config);
  }

  override createAdapter(): SqliteAdapter {
    return new (class extends SqliteAdapter {
      override get supportsTransactionalDdl(): boolean {
        return true;
      }
    })();
  }

  override createDriver(): SqliteDriver {
    return new (class extends SqliteDriver {
      override async beginTransaction(connection: DatabaseConnection): Promise<void> {
        await connection.executeQuery(CompiledQuery.raw('begin immediate'));
      }
    })(this.config);
  }
}

// Epoch seconds and counts arrive as int8, which pg returns as strings; every such value here fits
// a double exactly, and the SQLite dialect already returns numbers.
const pgTypes = new pg.TypeOverrides();
pgTypes.setTypeParser(pg.types.builtins.INT8, Number);

function openPostgres(url: string, poolSize: number): Db {
  // A bounded wait for a connection: a request fails (500) rather than hang behind a stalled database.
  const pool = new pg.Pool({ connectionString: url, max: poolSize, types: pgTypes, connectionTimeoutMillis: 10_000 });
  // An idle client losing its server connection must not crash the process: the pool drops it.
  pool.on('error', () => {});
  return new Kysely<Database>({ dialect: new SerialPostgresTransactions({ pool }) });
}

/** The advisory lock every write transaction takes (an arbitrary constant: "tessera" in ASCII). */
const WRITE_LOCK = 0x74657373657261n;
/** How long a write transaction waits for the write lock, and how long one may sit idle holding it. */
export const LOCK_TIMEOUT = '5s';
export const IDLE_IN_TRANSACTION_TIMEOUT = '30s';
/** How long `exclusively` waits for another instance's turn (it holds the lock across argon2 work). */
export const EXCLUSIVE_LOCK_TIMEOUT = '10s';
/** The lock `exclusively` holds; another constant, so it can be held around write transactions. */
const EXCLUSIVE_LOCK = WRITE_LOCK + 1n;

/**
 * Runs `work` while no other instance runs `exclusively` on the same database: for steps longer
 * than one transaction, such as creating the first admin (argon2 hashing, then insert, then audit).
 * On SQLite there is one server per file and `work` simply runs.
 */
export async function exclusively<T>(db: Db, work: () => Promise<T>): Promise<T> {
  if (!(db.getExecutor().adapter instanceof PostgresAdapter)) return work();
  return db.connection().execute(async (session) => {
    // Bounded like the write lock's wait: an instance paused while holding this one must not hold
    // every other instance's start-up for good. The setting is the session's, so it is reset.
    await sql`select set_config('lock_timeout', ${EXCLUSIVE_LOCK_TIMEOUT}, false)`.execute(session);
    try {
      await sql`select pg_advisory_lock(${sql.lit(EXCLUSIVE_LOCK)})`.execute(session);
    } finally {
      await sql`reset lock_timeout`.execute(session);
    }
    try {
      return await work();
    } finally {
      await sql`select pg_advisory_unlock(${sql.lit(EXCLUSIVE_LOCK)})`.execute(session);
    }
  });
}

/**
 * Every transaction takes one transaction-scoped advisory lock after BEGIN, so write transactions
 * across all instances run one at a time, like SQLite's BEGIN IMMEDIATE below: a service that reads,
 * checks and writes (rotate a secret, apply an If-Match update, bootstrap the first admin) needs no
 * row locks or serialization retries. Writes are rare (operator actions). The token path's writes
 * to tables no transaction touches (audit rows, revocations, limits) are single statements outside
 * transactions; its writes to client rows (a secret's re-hash, last use) take the lock like any
 * other, since row locks taken in another order than a rotation's would deadlock against it.
 */
class SerialPostgresTransactions extends PostgresDialect {
  constructor(private readonly config: PostgresDialectConfig) {
    super(config);
  }

  override createDriver(): PostgresDriver {
    return new (class extends PostgresDriver {
      override async beginTransaction(connection: DatabaseConnection, settings: TransactionSettings): Promise<void> {
        // Read committed whatever the server's default: under a snapshot taken before the lock
        // was granted, a read-check-write would check stale rows.
        await super.beginTransaction(connection, { ...settings, isolationLevel: settings.isolationLevel ?? 'read committed' });
        // An instance paused or cut off inside a transaction would hold the lock until its TCP
        // connection timed out (hours): every admin write everywhere would queue behind it and use
        // up the pools. The server ends such a transaction, and a waiter gives up with a 500.
        try {
          await connection.executeQuery(
            CompiledQuery.raw(`select set_config('lock_timeout', '${LOCK_TIMEOUT}', true), set_config('idle_in_transaction_session_timeout', '${IDLE_IN_TRANSACTION_TIMEOUT}', true)`),
          );
          await connection.executeQuery(CompiledQuery.raw(`select pg_advisory_xact_lock(${WRITE_LOCK})`));
        } catch (err) {
          // kysely rolls back only a transaction that began: this connection goes back to the pool.
          await connection.executeQuery(CompiledQuery.raw('rollback')).catch(() => {});
          throw err;
        }
      }
    })(this.config);
  }
}
