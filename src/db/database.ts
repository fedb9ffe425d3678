/**
 * The database handle. SQLite (better-sqlite3) is the embedded default; every query goes through
 * kysely, so business logic never knows which dialect it talks to.
 */
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';

import SQLite from 'better-sqlite3';
import { CompiledQuery, Kysely, SqliteDialect, SqliteDriver, type DatabaseConnection, type SqliteDatabase, type SqliteDialectConfig } from 'kysely';

import type { AuditEventTable } from '../audit/audit-event.table.js';
import type { ClientSecretTable, ClientTable } from '../clients/client.table.js';
import type { RevokedTokenTable } from '../introspection/revoked-token.table.js';

export interface Database {
  clients: ClientTable;
  client_secrets: ClientSecretTable;
  audit_events: AuditEventTable;
  revoked_tokens: RevokedTokenTable;
}

export type Db = Kysely<Database>;

/** Opens (creating if needed) the SQLite database at `path`. `:memory:` is accepted for tests. */
export function openDatabase(path: string): Db {
  if (path !== ':memory:') {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    // The file holds secret hashes and the audit log: owner-only from its first byte, whatever the
    // umask. SQLite gives its -wal and -shm files the same mode.
    closeSync(openSync(path, 'a', 0o600));
  }
  const sqlite = new SQLite(path);
  // WAL lets readers run during the audit writer's commits; FULL makes each commit durable, since
  // a token is only released once its audit row is committed; the busy timeout absorbs a CLI
  // writing to the same file.
  sqlite.pragma('journal_mode = WAL');
  sqlite.pragma('synchronous = FULL');
  sqlite.pragma('busy_timeout = 5000');
  sqlite.pragma('foreign_keys = ON');
  return new Kysely<Database>({ dialect: new ImmediateTransactions({ database: withStatementCache(sqlite) }) });
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
 */
class ImmediateTransactions extends SqliteDialect {
  constructor(private readonly config: SqliteDialectConfig) {
    super(config);
  }

  override createDriver(): SqliteDriver {
    return new (class extends SqliteDriver {
      override async beginTransaction(connection: DatabaseConnection): Promise<void> {
        await connection.executeQuery(CompiledQuery.raw('begin immediate'));
      }
    })(this.config);
  }
}
