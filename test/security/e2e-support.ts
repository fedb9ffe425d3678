/**
 * Helpers for the end-to-end security tests: a temporary installation (database + keys directory),
 * a bounded token-request load that classifies every outcome, and direct reads of the SQLite file.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

import SQLite from 'better-sqlite3';
import { decodeJwt } from 'jose';

import { ROOT, freePort, startServer, type RunningServer } from '../support/process.js';

export const API = 'https://api.example.com';

export interface Installation {
  readonly dir: string;
  readonly env: NodeJS.ProcessEnv;
  readonly issuer: string;
  readonly databasePath: string;
  /** Every server started through `start`, so cleanup can kill whatever is still running. */
  readonly servers: RunningServer[];
  /** Starts the built server (as test/support/process.ts does) and waits, at most 30 s, for it to listen. */
  start(): Promise<RunningServer>;
  /** SIGKILLs every server still running and removes the directory. */
  cleanup(): Promise<void>;
}

export async function install(extraEnv: NodeJS.ProcessEnv = {}): Promise<Installation> {
  const dir = mkdtempSync(join(tmpdir(), 'tessera-security-'));
  const port = await freePort();
  const issuer = `http://127.0.0.1:${port}`;
  const databasePath = join(dir, 'data', 'tessera.db');
  const env: NodeJS.ProcessEnv = {
    PORT: String(port),
    HOST: '127.0.0.1',
    ISSUER: issuer,
    DATABASE_URL: databasePath,
    KEYS_DIR: join(dir, 'keys'),
    // Ticks (which take the key lock) every second, so a kill can land while the lock is held.
    KEY_RELOAD_INTERVAL: '1',
    // These tests drive thousands of tokens through one client on purpose: no per-client rate
    // limit (where the server has one; an unknown variable is ignored).
    TOKEN_RATE_LIMIT: '0',
    ...extraEnv,
  };
  const servers: RunningServer[] = [];
  return {
    dir,
    env,
    issuer,
    databasePath,
    servers,
    start: () => startServer(env, (server) => servers.push(server)),
    async cleanup() {
      for (const server of servers) {
        if (server.process.exitCode === null && server.process.signalCode === null) server.process.kill('SIGKILL');
        await server.exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface CreatedClient {
  readonly client_id: string;
  readonly client_secret: string;
}

/** `node bin/tessera.js …` (as test/support/process.ts's tessera), killed if it runs over 60 s. */
export function tessera(env: NodeJS.ProcessEnv, ...args: string[]): Promise<{ stdout: string; stderr: string }> {
  return promisify(execFile)(process.execPath, ['bin/tessera.js', ...args], { cwd: ROOT, env: { PATH: process.env.PATH, ...env }, timeout: 60_000, killSignal: 'SIGKILL' });
}

export async function createClientWithCli(env: NodeJS.ProcessEnv, name: string): Promise<CreatedClient> {
  const { stdout } = await tessera(env, 'clients', 'create', '--name', name, '--audience', API, '--json');
  return JSON.parse(stdout) as CreatedClient;
}

export const basic = (id: string, secret: string) =>
  `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`;

/** What one token request came to, as the caller saw it, and when (epoch ms) it was known. */
export type Outcome = { readonly at: number } & (
  /** 200 with a complete JSON body holding an access token. */
  | { readonly kind: 'token'; readonly jti: string; readonly token: string }
  /** A complete answer with another status (e.g. 503 overloaded, 500 audit failure). */
  | { readonly kind: 'status'; readonly status: number; readonly body: string }
  /** No answer at all: refused, reset or closed before any response header (or timed out waiting). */
  | { readonly kind: 'no-answer'; readonly error: string }
  /** Headers arrived but the body did not complete: a truncated answer. */
  | { readonly kind: 'truncated'; readonly status: number; readonly error: string }
  /** A complete body that is not what a 200 must be (not JSON, or no access_token). */
  | { readonly kind: 'malformed'; readonly status: number; readonly body: string }
);

export async function requestToken(issuer: string, authorization: string, timeoutMs = 30_000): Promise<Outcome> {
  const outcome = await tokenOutcome(issuer, authorization, timeoutMs);
  return { ...outcome, at: Date.now() };
}

type Untimed<T> = T extends unknown ? Omit<T, 'at'> : never;

async function tokenOutcome(issuer: string, authorization: string, timeoutMs: number): Promise<Untimed<Outcome>> {
  const signal = AbortSignal.timeout(timeoutMs);
  let res: Response;
  try {
    res = await fetch(`${issuer}/oauth/token`, {
      method: 'POST',
      headers: { Authorization: authorization, 'Content-Type': 'application/x-www-form-urlencoded' },
      body: 'grant_type=client_credentials',
      signal,
    });
  } catch (err) {
    return { kind: 'no-answer', error: describe(err) };
  }
  let body: string;
  try {
    body = await res.text();
  } catch (err) {
    return { kind: 'truncated', status: res.status, error: describe(err) };
  }
  if (res.status !== 200) return { kind: 'status', status: res.status, body };
  try {
    const parsed = JSON.parse(body) as { access_token?: unknown };
    if (typeof parsed.access_token !== 'string') return { kind: 'malformed', status: res.status, body };
    const { jti } = decodeJwt(parsed.access_token);
    if (typeof jti !== 'string') return { kind: 'malformed', status: res.status, body };
    return { kind: 'token', jti, token: parsed.access_token };
  } catch {
    return { kind: 'malformed', status: res.status, body };
  }
}

function describe(err: unknown): string {
  const e = err as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  return [e.name, e.message, e.cause?.code ?? e.cause?.message].filter(Boolean).join(': ');
}

export interface LoadOptions {
  readonly issuer: string;
  readonly authorization: string;
  /** Requests in flight at once. */
  readonly concurrency: number;
  /** Most requests started in all. */
  readonly maxRequests: number;
  /** No request starts after this many milliseconds. */
  readonly durationMs: number;
  /** Per-request timeout. */
  readonly requestTimeoutMs?: number;
  /** Called for every outcome as it arrives. */
  readonly onOutcome?: (outcome: Outcome) => void;
}

export interface Load {
  readonly outcomes: Outcome[];
  /** Stops starting requests; resolves once every request started has its outcome. */
  stop(): Promise<Outcome[]>;
  /** Resolves once every request started has its outcome (after stop, the bound or the deadline). */
  readonly done: Promise<Outcome[]>;
  /** Resolves when `count` outcomes satisfying `predicate` have arrived (rejects at the deadline). */
  when(predicate: (o: Outcome) => boolean, count: number): Promise<void>;
  readonly inFlight: () => number;
}

/** `concurrency` workers, each sending one request after another: bounded in count and time. */
export function startLoad(options: LoadOptions): Load {
  const outcomes: Outcome[] = [];
  const deadline = Date.now() + options.durationMs;
  let started = 0;
  let inFlight = 0;
  let stopped = false;
  const waiters: { predicate: (o: Outcome) => boolean; remaining: number; resolve: () => void }[] = [];

  const worker = async () => {
    while (!stopped && started < options.maxRequests && Date.now() < deadline) {
      started += 1;
      inFlight += 1;
      const outcome = await requestToken(options.issuer, options.authorization, options.requestTimeoutMs);
      inFlight -= 1;
      outcomes.push(outcome);
      options.onOutcome?.(outcome);
      for (const waiter of [...waiters]) {
        if (waiter.predicate(outcome) && --waiter.remaining === 0) {
          waiters.splice(waiters.indexOf(waiter), 1);
          waiter.resolve();
        }
      }
      // A refused connection fails at once: pace the retries instead of spinning on them.
      if (outcome.kind === 'no-answer' && !stopped) await new Promise((resolve) => setTimeout(resolve, 10));
    }
  };
  const done = Promise.all(Array.from({ length: options.concurrency }, worker)).then(() => outcomes);
  void done.then(() => {
    for (const waiter of waiters.splice(0)) waiter.resolve();
  });

  return {
    outcomes,
    done,
    inFlight: () => inFlight,
    stop: () => {
      stopped = true;
      return done;
    },
    when: (predicate, count) => {
      const already = outcomes.filter(predicate).length;
      if (already >= count) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        const waiter = { predicate, remaining: count - already, resolve };
        waiters.push(waiter);
        // The load ended (bound, deadline or stop) before enough outcomes arrived.
        void done.then(() => {
          if (waiter.remaining > 0) reject(new Error(`only ${count - waiter.remaining} of ${count} awaited outcomes arrived; outcomes: ${summarize(outcomes)}`));
        });
      });
    },
  };
}

export function summarize(outcomes: readonly Outcome[]): string {
  const counts = new Map<string, number>();
  for (const o of outcomes) {
    const key = o.kind === 'token' ? 'token' : o.kind === 'no-answer' ? `no-answer(${o.error})` : `${o.kind}(${o.status})`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return JSON.stringify(Object.fromEntries(counts));
}

export const tokensOf = (outcomes: readonly Outcome[]) => outcomes.flatMap((o) => (o.kind === 'token' ? [o] : []));

/** Runs `work` with a read-only connection to the database (WAL lets it read beside a running server). */
export function withDatabase<T>(path: string, work: (db: SQLite.Database) => T): T {
  const db = new SQLite(path, { readonly: true, fileMustExist: true });
  try {
    return work(db);
  } finally {
    db.close();
  }
}

export function integrityCheck(path: string): string[] {
  return withDatabase(path, (db) => (db.prepare('PRAGMA integrity_check').all() as { integrity_check: string }[]).map((r) => r.integrity_check));
}

/** The jtis among `jtis` that have no `token.issued` row. */
export function jtisWithoutAuditRow(path: string, jtis: readonly string[]): string[] {
  return withDatabase(path, (db) => {
    const find = db.prepare("SELECT 1 FROM audit_events WHERE type = 'token.issued' AND jti = ?").pluck();
    return jtis.filter((jti) => find.get(jti) === undefined);
  });
}

export function countAuditRows(path: string, type: string, clientId: string): number {
  return withDatabase(path, (db) => db.prepare('SELECT count(*) FROM audit_events WHERE type = ? AND client_id = ?').pluck().get(type, clientId) as number);
}

/** Pino lines at level error (50) or above. */
export function errorLines(server: RunningServer): string[] {
  return server.stdout.filter((line) => {
    try {
      return ((JSON.parse(line) as { level?: number }).level ?? 0) >= 50;
    } catch {
      return false;
    }
  });
}

/** Resolves with the exit code, or rejects if the process has not exited within `ms`. */
export function exitWithin(server: RunningServer, ms: number): Promise<number | null> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`server did not exit within ${ms} ms`)), ms);
  });
  return Promise.race([server.exited, timeout]).finally(() => clearTimeout(timer));
}

/** Lines of the servers' stdout and stderr that contain any of the credentials (none, we expect). */
export function credentialsInOutput(servers: readonly RunningServer[], credentials: readonly string[]): string[] {
  const lines = servers.flatMap((s) => [...s.stdout, ...s.stderr.join('').split('\n')]);
  return lines.filter((line) => credentials.some((c) => line.includes(c))).map((line) => line.slice(0, 200));
}
