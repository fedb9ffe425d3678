/**
 * Helpers for the end-to-end security tests: a temporary installation (database + keys directory),
 * a bounded token-request load that classifies every outcome, and direct reads of the database.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

import { sql } from 'kysely';
import { decodeJwt } from 'jose';

import { openDatabase, type Db } from '../../src/db/database.js';
import { createTestDatabase, testDialect } from '../support/database.js';
import { ROOT, freePort, startServer, type RunningServer } from '../support/process.js';

export const API = 'https://api.example.com';

export interface Installation {
  readonly dir: string;
  readonly env: NodeJS.ProcessEnv;
  readonly issuer: string;
  /** DATABASE_URL: a SQLite file, or a PostgreSQL schema of its own (test/support/database.ts). */
  readonly databaseUrl: string;
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
  const database = await createTestDatabase(join(dir, 'data'));
  const env: NodeJS.ProcessEnv = {
    PORT: String(port),
    HOST: '127.0.0.1',
    ISSUER: issuer,
    DATABASE_URL: database.url,
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
    databaseUrl: database.url,
    servers,
    start: () => startServer(env, (server) => servers.push(server)),
    async cleanup() {
      for (const server of servers) {
        if (server.process.exitCode === null && server.process.signalCode === null) server.process.kill('SIGKILL');
        await server.exited;
      }
      await database.drop();
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

/** Runs `work` with a connection of its own to the database (beside a running server). */
export async function withDatabase<T>(url: string, work: (db: Db) => Promise<T>): Promise<T> {
  const db = openDatabase(url, { poolSize: 1 });
  try {
    return await work(db);
  } finally {
    await db.destroy();
  }
}

/**
 * ['ok'] when the database is consistent after a crash: SQLite's integrity_check; on PostgreSQL
 * (whose own WAL recovery is not ours to test) every table can still be read in full.
 */
export function integrityCheck(url: string): Promise<string[]> {
  return withDatabase(url, async (db) => {
    if (testDialect === 'sqlite') return (await sql<{ integrity_check: string }>`pragma integrity_check`.execute(db)).rows.map((r) => r.integrity_check);
    for (const table of ['clients', 'client_secrets', 'audit_events', 'revoked_tokens'] as const) await db.selectFrom(table).selectAll().execute();
    return ['ok'];
  });
}

/** The jtis among `jtis` that have no `token.issued` row. */
export function jtisWithoutAuditRow(url: string, jtis: readonly string[]): Promise<string[]> {
  return withDatabase(url, async (db) => {
    const audited = new Set<string | null>();
    for (let i = 0; i < jtis.length; i += 500) {
      const rows = await db.selectFrom('audit_events').select('jti').where('type', '=', 'token.issued').where('jti', 'in', jtis.slice(i, i + 500)).execute();
      for (const row of rows) audited.add(row.jti);
    }
    return jtis.filter((jti) => !audited.has(jti));
  });
}

/** Audit rows of one type, for one client or for all. */
export function countAuditRows(url: string, type: string, clientId?: string): Promise<number> {
  return withDatabase(url, async (db) => {
    let query = db.selectFrom('audit_events').select((eb) => eb.fn.countAll<number>().as('n')).where('type', '=', type);
    if (clientId !== undefined) query = query.where('client_id', '=', clientId);
    return Number((await query.executeTakeFirstOrThrow()).n);
  });
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

/** What one process wrote to one stream, named for the report. */
export interface ProcessOutput {
  readonly name: string;
  readonly stream: 'stdout' | 'stderr';
  readonly text: string;
}

/** Every server's stdout and stderr, in start order. */
export function serverOutputs(servers: readonly RunningServer[]): ProcessOutput[] {
  return servers.flatMap((s, i) => [
    { name: `server ${i + 1} stdout`, stream: 'stdout' as const, text: s.stdout.join('\n') },
    { name: `server ${i + 1} stderr`, stream: 'stderr' as const, text: s.stderr.join('') },
  ]);
}

/** A `tessera` run's stdout and stderr. */
export function cliOutputs(args: readonly string[], run: { readonly stdout: string; readonly stderr: string }): ProcessOutput[] {
  const name = `tessera ${args.join(' ')}`;
  return [
    { name: `${name}: stdout`, stream: 'stdout', text: run.stdout },
    { name: `${name}: stderr`, stream: 'stderr', text: run.stderr },
  ];
}

/**
 * The parts of a credential that are secret on their own, each of which must not leak either: the
 * credential itself; the random part of a `tsec_<id>_<random>` secret (its id is public); the
 * signature of a JWT; the digest of an argon2 hash; the value of a Basic or Bearer header (the
 * base64 of `id:secret` holds neither on its own).
 */
export function leakForms(credential: string): string[] {
  const forms = [credential];
  const header = /^(?:Basic|Bearer) (.+)$/.exec(credential);
  if (header) forms.push(...leakForms(header[1]!));
  const secret = /^tsec_[0-9a-f]{16}_([A-Za-z0-9_-]{43})$/.exec(credential);
  if (secret) forms.push(secret[1]!);
  const jwt = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.([A-Za-z0-9_-]{40,})$/.exec(credential);
  if (jwt) forms.push(jwt[1]!);
  const hash = /^\$argon2[a-z]*\$.*\$([A-Za-z0-9+/]{20,})$/.exec(credential);
  if (hash) forms.push(hash[1]!);
  return forms;
}

/**
 * Whatever its value, no output line may hold something shaped like a Tessera secret, a signed
 * JWT or an argon2 hash: this catches the credentials a test never saw (another client's secret,
 * a token the caller dropped). Tessera's own scrubbing leaves `tsec_[redacted]`, which is not one.
 */
export const CREDENTIAL_SHAPES: readonly RegExp[] = [
  /tsec_[0-9a-f]{16}_[A-Za-z0-9_-]{20,}/,
  /eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{40,}/,
  /\$argon2/,
];

/**
 * A line as written, and as it reads once its percent-encoding and each base64 run in it are
 * decoded: a credential can leak wrapped (a Basic header's value is base64 of `id:secret`, and
 * clients percent-encode the two differently, e.g. openid-client writes "_" as "%5F").
 */
function readings(line: string): string[] {
  const unpercent = (text: string) => {
    try {
      return decodeURIComponent(text.replaceAll('+', ' '));
    } catch {
      return text;
    }
  };
  const unbase64 = (text: string) => [...text.matchAll(/[A-Za-z0-9+/_-]{16,}={0,2}/g)].map(([run]) => Buffer.from(run, 'base64').toString('latin1'));
  const written = [line, unpercent(line)];
  const unwrapped = written.flatMap(unbase64);
  return [...written, ...unwrapped, ...unwrapped.map(unpercent)];
}

/**
 * Lines of `outputs` that hold, as written or decoded, a form (leakForms) of any of
 * `credentials` or anything credential-shaped (CREDENTIAL_SHAPES), as "<output name>: <line>"
 * cut to 300 characters.
 */
export function credentialLines(outputs: readonly ProcessOutput[], credentials: readonly string[]): string[] {
  const forms = [...new Set(credentials.flatMap(leakForms))];
  const leaks = (text: string) => forms.some((f) => text.includes(f)) || CREDENTIAL_SHAPES.some((shape) => shape.test(text));
  return outputs.flatMap(({ name, text }) =>
    text
      .split('\n')
      .filter((line) => readings(line).some(leaks))
      .map((line) => `${name}: ${line}`.slice(0, 300)),
  );
}

/** `text` with its one occurrence of `expected` cut out; throws unless `expected` occurs exactly once. */
export function cutOnce(text: string, expected: string): string {
  const at = text.indexOf(expected);
  if (at === -1 || text.indexOf(expected, at + 1) !== -1) {
    throw new Error(`expected exactly one occurrence of ${JSON.stringify(expected.slice(0, 80))}, found ${text.split(expected).length - 1}`);
  }
  return text.slice(0, at) + text.slice(at + expected.length);
}

/**
 * The banner server.ts prints on stderr, once, when the first start creates the bootstrap admin
 * client: the one place its secret may appear (on the `client_secret:` line).
 */
const BOOTSTRAP_BANNER = /^=+ Tessera bootstrap admin client \(shown once\) =+\nclient_id: +(\S+)\nclient_secret: (tsec_\S+)\n(?:(?!=+\n).*\n)*=+$/gm;

export interface BootstrapAdmin {
  readonly clientId: string;
  readonly secret: string;
}

/**
 * Finds the bootstrap banner among `outputs` and cuts its secret's line out of it, so that what
 * remains can be scanned for that secret like any other credential. Throws if a banner is printed
 * more than once or anywhere but stderr.
 */
export function withoutBootstrapBanner(outputs: readonly ProcessOutput[]): { bootstrap?: BootstrapAdmin; outputs: ProcessOutput[] } {
  let bootstrap: BootstrapAdmin | undefined;
  const rest = outputs.map((output) => {
    const banners = [...output.text.matchAll(BOOTSTRAP_BANNER)];
    if (banners.length === 0) return output;
    if (bootstrap || banners.length > 1) throw new Error(`the bootstrap banner was printed more than once (again in ${output.name})`);
    if (output.stream !== 'stderr') throw new Error(`the bootstrap banner was printed on ${output.name}, not on stderr`);
    const [banner] = banners as [RegExpExecArray];
    bootstrap = { clientId: banner[1]!, secret: banner[2]! };
    const line = `client_secret: ${bootstrap.secret}\n`;
    const at = banner.index + banner[0].indexOf(line);
    return { ...output, text: output.text.slice(0, at) + output.text.slice(at + line.length) };
  });
  return { bootstrap, outputs: rest };
}

/**
 * Lines of the servers' stdout and stderr that hold a credential (none, we expect): a form of any
 * of `credentials`, anything credential-shaped, or the bootstrap admin's secret anywhere but the
 * `client_secret:` line of its banner.
 */
export function credentialsInOutput(servers: readonly RunningServer[], credentials: readonly string[]): string[] {
  const { bootstrap, outputs } = withoutBootstrapBanner(serverOutputs(servers));
  return credentialLines(outputs, bootstrap ? [...credentials, bootstrap.secret] : credentials);
}

/** Every audit row stored now, one JSON line each, as an output to scan. */
export async function auditRowsOutput(url: string): Promise<ProcessOutput> {
  const rows = await withDatabase(url, (db) => db.selectFrom('audit_events').selectAll().orderBy('id').execute());
  return { name: 'audit_events', stream: 'stdout', text: rows.map((row) => JSON.stringify(row)).join('\n') };
}

/** The private members of every signing key in `keysDir`: key material that must never be output. */
export function privateKeyParts(keysDir: string): string[] {
  return readdirSync(keysDir)
    .filter((name) => name.endsWith('.json'))
    .flatMap((name) => {
      const jwk = (JSON.parse(readFileSync(join(keysDir, name), 'utf8')) as { private_jwk?: Record<string, unknown> }).private_jwk ?? {};
      return ['d', 'p', 'q', 'dp', 'dq', 'qi'].map((member) => jwk[member]).filter((value): value is string => typeof value === 'string');
    });
}

/** The argon2 hashes of every client secret stored now. */
export function storedSecretHashes(url: string): Promise<string[]> {
  return withDatabase(url, async (db) => (await db.selectFrom('client_secrets').select('hash').execute()).map((r) => r.hash));
}
