/**
 * `npm run bench`: Tessera on a temporary SQLite database under autocannon (keep-alive, 50
 * connections, BENCH_DURATION seconds after a warm-up), measured in the same run against the
 * machine's raw RS256 signing rate and a stock oidc-provider server (alternating with Tessera, in
 * BENCH_ROUNDS rounds), and a cached client's tokens while a fifth of the connections send bad
 * credentials. Prints req/s, p50/p99 latency and errors per scenario, the ratios, RSS growth over a
 * run with BENCH_MEMORY_CLIENTS distinct clients, and checks that every 200 token response has its
 * audit row.
 *
 * BENCH_ONLY=scale instead compares the token endpoint on SQLite with PostgreSQL
 * (BENCH_DATABASE_URL, default the local server's `test` database; a schema of its own, dropped
 * after), with one instance and with two sharing the database and keys.
 *
 * BENCH_ONLY=cpu instead measures where each token request's CPU goes (Linux): Tessera and stock
 * oidc-provider in turn, the event loop's thread against all the others, from /proc.
 *
 * Only 127.0.0.1 is contacted, and every load is bounded in time.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import autocannon from 'autocannon';
import pg from 'pg';

import { AuditLog } from '../src/audit/audit-log.js';
import { writeAuditRows } from '../src/audit/audit-writer.js';
import { createClient, type ClientServiceDeps } from '../src/clients/client.service.js';
import { SecretHasher } from '../src/clients/secret.js';
import { systemClock } from '../src/clock.js';
import { ARGON2_DEFAULTS, type Argon2Params } from '../src/config.js';
import { openDatabase, type Db } from '../src/db/database.js';
import { migrateToLatest } from '../src/db/migrate.js';
import { createLogger } from '../src/log.js';
import { rawSigningRate } from './sign-rate.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const DURATION = Number(process.env.BENCH_DURATION ?? 10);
const WARMUP = 2;
const CONNECTIONS = 50;
const DISTINCT_CLIENTS = Number(process.env.BENCH_CLIENTS ?? 1000);
// Tessera, stock oidc-provider and raw signing alternate this many times for the headline ratios.
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const ROUND_SECONDS = Number(process.env.BENCH_ROUND_SECONDS ?? 5);
const MEMORY_CLIENTS = Number(process.env.BENCH_MEMORY_CLIENTS ?? 10_000);
const MEMORY_SECONDS = Number(process.env.BENCH_MEMORY_SECONDS ?? 60);
// BENCH_ONLY=memory runs only the memory run (when investigating RSS).
// BENCH_NODE_ARGS='--cpu-prof --cpu-prof-dir=/tmp/prof': node flags for every Tessera process
// started (Node refuses profiling flags in NODE_OPTIONS).
const TESSERA = [...(process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean), 'dist/src/main.cjs'];
/** BENCH_SERVER_ENV='A=1 B=2': extra settings for every Tessera server started, for an investigation. */
const extraEnv = () => Object.fromEntries((process.env.BENCH_SERVER_ENV ?? '').split(' ').filter(Boolean).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
const API = 'https://api.example.com';

interface Credentials {
  readonly id: string;
  readonly secret: string;
}

interface Row {
  scenario: string;
  rps: number;
  p50: number;
  p99: number;
  non2xx: number;
  errors: number;
  /** 2xx answers, warm-up included: each is an issued token on the token endpoint. */
  ok: number;
}

const basic = ({ id, secret }: Credentials) => `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`;
const say = (line: string) => process.stdout.write(`${line}\n`);

/** Starts a server process and resolves once `readyUrl` answers (bounded: 30 s). */
async function startProcess(args: string[], env: NodeJS.ProcessEnv, readyUrl: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, args, { cwd: ROOT, env: { PATH: process.env.PATH, ...env }, stdio: ['ignore', 'ignore', 'inherit'] });
  let exited = false;
  child.once('exit', () => (exited = true));
  for (const deadline = Date.now() + 30_000; Date.now() < deadline && !exited; await new Promise((r) => setTimeout(r, 100))) {
    if (await fetch(readyUrl).then((r) => r.ok, () => false)) return child;
  }
  child.kill('SIGKILL');
  throw new Error(`${args.join(' ')} did not start`);
}

async function stop(child: ChildProcess): Promise<void> {
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await exited;
}

const rssMb = (child: ChildProcess) => {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'));
  return match ? Math.round(Number(match[1]) / 1024) : NaN;
};

type Options = Omit<autocannon.Options, 'url'> & { url: string };

/** One autocannon run after a warm-up. */
async function load(scenario: string, options: Options, seconds = DURATION, afterWarmup?: () => void): Promise<Row> {
  return loadSplit(scenario, [options], seconds, afterWarmup);
}

/**
 * The same: CONNECTIONS split evenly over several targets (instances behind one issuer, as a load
 * balancer would spread them), run at once; req/s are summed, latencies are the worst target's.
 */
async function loadSplit(scenario: string, targets: readonly Options[], seconds = DURATION, afterWarmup?: () => void): Promise<Row> {
  const connections = CONNECTIONS / targets.length;
  const run = (duration: number) => Promise.all(targets.map((options) => autocannon({ ...options, connections, duration })));
  const warmup = await run(WARMUP);
  afterWarmup?.();
  const results = await run(seconds);
  const sum = (pick: (r: autocannon.Result) => number) => results.reduce((total, r) => total + pick(r), 0);
  const row = {
    scenario,
    rps: Math.round(sum((r) => r.requests.average)),
    p50: Math.max(...results.map((r) => r.latency.p50)),
    p99: Math.max(...results.map((r) => r.latency.p99)),
    non2xx: sum((r) => r.non2xx),
    errors: sum((r) => r.errors + r.timeouts),
    ok: warmup.reduce((total, r) => total + r['2xx'], 0) + sum((r) => r['2xx']),
  };
  // When some answers are refusals (503 from a full argon2 queue), req/s alone overstates the work done.
  const served = row.non2xx > 0 ? `  (2xx ${Math.round(sum((r) => r['2xx']) / seconds)}/s)` : '';
  say(`${scenario.padEnd(44)} ${String(row.rps).padStart(7)} req/s  p50 ${row.p50} ms  p99 ${row.p99} ms  non-2xx ${row.non2xx}  errors ${row.errors}${served}`);
  return row;
}

/** A POST /oauth/token load cycling through `clients`, one per request. */
function tokenLoad(url: string, clients: readonly Credentials[]): Options {
  let next = 0;
  return {
    url: `${url}/oauth/token`,
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: 'grant_type=client_credentials',
    requests: [
      {
        setupRequest: (request) => ({ ...request, headers: { ...request.headers, authorization: basic(clients[next++ % clients.length]!) } }),
      },
    ],
  };
}

/** Hashes the secrets of the clients the bench creates, on every core (makeClients runs 8 at once). */
const clientMaker = (params: Argon2Params) => new SecretHasher(params, { concurrency: cpus().length, queue: 8 });

async function makeClients(db: Db, hasher: SecretHasher, count: number, input: Parameters<typeof createClient>[1]): Promise<Credentials[]> {
  const deps: ClientServiceDeps = {
    db,
    hasher,
    clock: systemClock,
    limits: { maxAccessTokenTtl: 86_400 },
    auditLog: new AuditLog(writeAuditRows(db), createLogger('silent'), systemClock),
    actor: 'bench',
    clientChanged: () => {},
  };
  const made: Credentials[] = [];
  for (let i = 0; i < count; i += 8) {
    const batch = await Promise.all(Array.from({ length: Math.min(8, count - i) }, () => createClient(deps, input)));
    made.push(...batch.map(({ client, clientSecret }) => ({ id: client.clientId, secret: clientSecret })));
  }
  return made;
}

/** Gets one token per client, so the measured runs see verified (cached) credentials. */
async function warm(url: string, clients: readonly Credentials[]): Promise<number> {
  let ok = 0;
  for (let i = 0; i < clients.length; i += 16) {
    const results = await Promise.all(
      clients.slice(i, i + 16).map((c) =>
        fetch(`${url}/oauth/token`, { method: 'POST', headers: { authorization: basic(c), 'content-type': 'application/x-www-form-urlencoded' }, body: 'grant_type=client_credentials' }),
      ),
    );
    ok += results.filter((r) => r.status === 200).length;
  }
  return ok;
}

async function issuedRows(databaseUrl: string, clientId?: string): Promise<number> {
  const db = openDatabase(databaseUrl);
  let query = db.selectFrom('audit_events').select((eb) => eb.fn.countAll<number>().as('n')).where('type', '=', 'token.issued');
  if (clientId !== undefined) query = query.where('client_id', '=', clientId);
  const row = await query.executeTakeFirstOrThrow();
  await db.destroy();
  return Number(row.n);
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'tessera-bench-'));
  const port = 39_000 + Math.floor(Math.random() * 1000);
  const url = `http://127.0.0.1:${port}`;
  const dbPath = join(dir, 'tessera.db');
  const env = { PORT: String(port), ISSUER: url, DATABASE_URL: dbPath, KEYS_DIR: join(dir, 'keys'), LOG_LEVEL: 'warn', TESSERA_BOOTSTRAP_ADMIN: 'false', TOKEN_RATE_LIMIT: '0', ...extraEnv() };
  say(`machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${Math.round(totalmem() / 2 ** 30)} GiB, node ${process.version}`);
  say(`load: autocannon, ${CONNECTIONS} connections, keep-alive, ${WARMUP} s warm-up then ${DURATION} s per scenario\n`);

  try {
    if (process.env.BENCH_ONLY === 'memory') return await memoryRun(dir, port + 2);
    if (process.env.BENCH_ONLY === 'scale') return await scaleRun(dir, port + 3);
    if (process.env.BENCH_ONLY === 'cpu') return await cpuRun(dir, port + 4);
    // Clients: one workload, DISTINCT_CLIENTS more, and a resource server that introspects.
    const db = openDatabase(dbPath);
    await migrateToLatest(db);
    const hasher = clientMaker(ARGON2_DEFAULTS);
    const [one] = await makeClients(db, hasher, 1, { client_name: 'bench', audience: [API] });
    const many = await makeClients(db, hasher, DISTINCT_CLIENTS, { client_name: 'bench-many', audience: [API] });
    const [rs] = await makeClients(db, hasher, 1, { client_name: 'bench-rs', grant_types: [], introspection_audiences: ['*'] });
    await db.destroy();

    const jwksUrl = `${url}/.well-known/jwks.json`;
    let server = await startProcess(TESSERA, env, jwksUrl);
    let warmed = (await warm(url, [one!])) + (await warm(url, many));
    const single = await load('token, cached credentials, 1 client', tokenLoad(url, [one!]));
    const distinct = await load(`token, cached credentials, ${DISTINCT_CLIENTS} clients`, tokenLoad(url, many));

    const token = (await (await fetch(`${url}/oauth/token`, { method: 'POST', headers: { authorization: basic(one!), 'content-type': 'application/x-www-form-urlencoded' }, body: 'grant_type=client_credentials' })).json()) as { access_token: string };
    warmed += 1;
    await load('introspection (cached caller)', {
      url: `${url}/oauth/introspect`,
      method: 'POST',
      headers: { authorization: basic(rs!), 'content-type': 'application/x-www-form-urlencoded' },
      body: `token=${token.access_token}`,
    });
    await load('JWKS', { url: `${url}/.well-known/jwks.json` });

    const stockPort = port + 1;
    const stock = await startProcess(['dist/bench/stock-provider.js', String(stockPort), 'stock', 'stock-secret'], {}, `http://127.0.0.1:${stockPort}/jwks`);
    const rounds = await alternate(tokenLoad(url, [one!]), tokenLoad(url, many), tokenLoad(`http://127.0.0.1:${stockPort}`, [{ id: 'stock', secret: 'stock-secret' }]));
    await stop(stock);
    await stop(server);

    // Every request pays argon2: the same server with the verified-credential cache off.
    server = await startProcess(TESSERA, { ...env, CREDENTIAL_CACHE_TTL: '0' }, jwksUrl);
    const uncached = await load('token, uncached credentials (argon2 each)', tokenLoad(url, [one!]));
    await stop(server);

    // Bad credentials from everywhere at once: the back-offs, which would soon answer one address's
    // guesses with a cheap 429, are set out of reach, so every guess costs argon2.
    server = await startProcess(TESSERA, { ...env, AUTH_FAILURES_PER_ADDRESS: '1000000', AUTH_FAILURES_PER_CLIENT: '1000000' }, jwksUrl);
    warmed += await warm(url, [one!]);
    const flooded = await underFlood(url, one!);
    await stop(server);

    const audited = await issuedRows(dbPath);
    const ok = single.ok + distinct.ok + uncached.ok + flooded.ok + rounds.tesseraOk + warmed;
    // Every token a client received has its row. A run ends by closing its connections, so tokens
    // issued to requests cut off then have rows but were never received: at most one per connection
    // per run (warm-up and measured; four token scenarios and Tessera's two turns in each round).
    const cutOff = 2 * (4 + 2 * ROUNDS) * CONNECTIONS;
    const complete = audited >= ok && audited - ok <= cutOff;
    say(`\naudit: ${audited} token.issued rows for ${ok} token responses with status 200 (${audited - ok} issued to requests cut off at run ends, at most ${cutOff}) — ${complete ? 'ok' : 'ROWS MISSING'}`);
    if (!complete) process.exitCode = 1;

    say(`\nratios (median of ${ROUNDS} rounds, lowest–highest)`);
    say(`  Tessera (1 client) ÷ stock oidc-provider:     ${spread(rounds.stock)}`);
    say(`  Tessera (1 client) ÷ raw signing rate:        ${spread(rounds.signing)}`);
    say(`  ${DISTINCT_CLIENTS} clients ÷ 1 client:                 ${spread(rounds.many)}`);

    if (MEMORY_CLIENTS > 0) await memoryRun(dir, port + 2);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Tessera's token endpoint (one client, then DISTINCT_CLIENTS), the stock oidc-provider and raw
 * signing, measured in turn, ROUNDS times. A shared host's speed drifts by tens of percent within
 * minutes; measured once, one after the other, each would meet a different machine. Alternating,
 * each round's ratios compare like with like, and the spread of the rounds shows the noise left.
 */
async function alternate(tessera: Options, tesseraMany: Options, stock: Options): Promise<{ stock: number[]; signing: number[]; many: number[]; tesseraOk: number }> {
  const ratios = { stock: [] as number[], signing: [] as number[], many: [] as number[], tesseraOk: 0 };
  for (let round = 1; round <= ROUNDS; round += 1) {
    const ours = await load(`round ${round}: Tessera, 1 client`, tessera, ROUND_SECONDS);
    const oursMany = await load(`round ${round}: Tessera, ${DISTINCT_CLIENTS} clients`, tesseraMany, ROUND_SECONDS);
    const theirs = await load(`round ${round}: stock oidc-provider, 1 client`, stock, ROUND_SECONDS);
    const signing = await rawSigningRate(ROUND_SECONDS);
    say(`${`round ${round}: raw RS256 signing (worker per core)`.padEnd(44)} ${String(signing.perSecond).padStart(7)} sig/s  (${signing.threads} threads)`);
    ratios.stock.push(ours.rps / theirs.rps);
    ratios.signing.push(ours.rps / signing.perSecond);
    ratios.many.push(oursMany.rps / ours.rps);
    ratios.tesseraOk += ours.ok + oursMany.ok;
  }
  return ratios;
}

/**
 * The cached client on most of the connections while the rest send wrong secrets for unknown
 * client ids, each one new: what the client gets while the argon2 pool is kept busy for nothing.
 */
async function underFlood(url: string, client: Credentials): Promise<Row> {
  const flooders = Math.max(1, Math.round(CONNECTIONS / 5));
  let guess = 0;
  const flood: Options = {
    ...tokenLoad(url, []),
    requests: [{ setupRequest: (request) => ({ ...request, headers: { ...request.headers, authorization: basic({ id: `flood-${guess++}`, secret: 'tsec_wrong' }) } }) }],
  };
  const run = (duration: number) =>
    Promise.all([autocannon({ ...tokenLoad(url, [client]), connections: CONNECTIONS - flooders, duration }), autocannon({ ...flood, connections: flooders, duration })]);
  const [warmGood] = await run(WARMUP);
  const [good, bad] = await run(DURATION);
  const row = { scenario: 'token, 1 client, during a flood', rps: Math.round(good.requests.average), p50: good.latency.p50, p99: good.latency.p99, non2xx: good.non2xx, errors: good.errors + good.timeouts, ok: warmGood['2xx'] + good['2xx'] };
  say(`${`token, cached, ${CONNECTIONS - flooders} conn. + ${flooders} flooding`.padEnd(44)} ${String(row.rps).padStart(7)} req/s  p50 ${row.p50} ms  p99 ${row.p99} ms  non-2xx ${row.non2xx}  errors ${row.errors}`);
  say(`${'  the flood'.padEnd(44)} ${String(Math.round(bad.requests.average)).padStart(7)} req/s  p99 ${bad.latency.p99} ms  4xx ${bad['4xx']}  5xx ${bad['5xx']}  2xx ${bad['2xx']}`);
  return row;
}

const spread = (values: readonly number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  return `${sorted[Math.floor(sorted.length / 2)]!.toFixed(2)} (${sorted[0]!.toFixed(2)}–${sorted[sorted.length - 1]!.toFixed(2)})`;
};

/**
 * RSS across a long run with many distinct clients: the caches must stay bounded. The heap first
 * sizes itself to the load (V8 grows the young generation and leaves the old one room for
 * garbage between full collections), so the run is judged from the end of its warm-up: RSS is
 * sampled every 2 s, and the growth is the median of the last 10 samples minus the median of the
 * first 10, which a leak moves and the collector's sawtooth does not.
 */
async function memoryRun(dir: string, port: number): Promise<void> {
  const url = `http://127.0.0.1:${port}`;
  const dbPath = join(dir, 'memory.db');
  // Cheap hashes (the server is configured with the same parameters, so nothing is re-hashed):
  // this run is about memory, and creating the clients must not take minutes.
  const argon2 = { ARGON2_MEMORY_KIB: '8192', ARGON2_TIME_COST: '1' };
  const db = openDatabase(dbPath);
  await migrateToLatest(db);
  const clients = await makeClients(db, clientMaker({ memoryCost: 8192, timeCost: 1, parallelism: 1 }), MEMORY_CLIENTS, { client_name: 'mem', audience: [API] });
  await db.destroy();

  const server = await startProcess(
    TESSERA,
    { PORT: String(port), ISSUER: url, DATABASE_URL: dbPath, KEYS_DIR: join(dir, 'memory-keys'), LOG_LEVEL: 'warn', TESSERA_BOOTSTRAP_ADMIN: 'false', TOKEN_RATE_LIMIT: '0', ...argon2, ...extraEnv() },
    `${url}/.well-known/jwks.json`,
  );
  await warm(url, clients);
  const idle = rssMb(server);
  const samples: number[] = [];
  let sampler: NodeJS.Timeout | undefined;
  const startSampling = () => {
    samples.push(rssMb(server));
    sampler = setInterval(() => samples.push(rssMb(server)), 2000);
  };
  await load(`token, ${MEMORY_CLIENTS} clients, ${MEMORY_SECONDS} s`, tokenLoad(url, clients), MEMORY_SECONDS, startSampling);
  clearInterval(sampler);
  samples.push(rssMb(server));
  await stop(server);
  const median = (values: readonly number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
  const edge = Math.min(10, Math.floor(samples.length / 2));
  const growth = median(samples.slice(-edge)) - median(samples.slice(0, edge));
  say(`memory: RSS ${idle} MB idle with every client's credentials cached, ${samples[0]} MB after the ${WARMUP} s warm-up, ${samples.at(-1)} MB after ${MEMORY_SECONDS} s`);
  say(`memory: growth across the run ${growth} MB (median of the last ${edge} samples − median of the first ${edge}); RSS every 2 s: ${samples.join(', ')} MB`);
}

/** CPU time a process's threads have used, in clock ticks: its main thread (the event loop) and the rest. */
function threadTicks(pid: number): { loop: number; others: number } {
  const ticks = { loop: 0, others: 0 };
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    let stat: string;
    try {
      stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
    } catch {
      continue; // the thread ended meanwhile
    }
    // utime and stime, the 14th and 15th fields; the name before them may hold spaces.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const used = Number(fields[11]) + Number(fields[12]);
    if (Number(tid) === pid) ticks.loop += used;
    else ticks.others += used;
  }
  return ticks;
}

/**
 * Where a token request's CPU goes: Tessera (1 client, cached credentials) and stock
 * oidc-provider, measured in turn, ROUNDS times; per request, the event loop's thread, every other
 * thread of the server (signing on libuv's pool, the audit writer, V8's collector), and this
 * process, the load generator. With both cores busy, req/s follow the total.
 */
async function cpuRun(dir: string, port: number): Promise<void> {
  const perSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }));
  const dbPath = join(dir, 'cpu.db');
  const db = openDatabase(dbPath);
  await migrateToLatest(db);
  const [client] = await makeClients(db, clientMaker(ARGON2_DEFAULTS), 1, { client_name: 'cpu', audience: [API] });
  await db.destroy();
  const url = `http://127.0.0.1:${port}`;
  const stockUrl = `http://127.0.0.1:${port + 1}`;
  const env = { PORT: String(port), ISSUER: url, DATABASE_URL: dbPath, KEYS_DIR: join(dir, 'cpu-keys'), LOG_LEVEL: 'warn', TESSERA_BOOTSTRAP_ADMIN: 'false', TOKEN_RATE_LIMIT: '0', ...extraEnv() };
  const started: ChildProcess[] = [];
  try {
    const tessera = await startProcess(TESSERA, env, `${url}/.well-known/jwks.json`);
    started.push(tessera);
    const stock = await startProcess(['dist/bench/stock-provider.js', String(port + 1), 'stock', 'stock-secret'], {}, `${stockUrl}/jwks`);
    started.push(stock);
    await warm(url, [client!]);
    const servers = [
      { name: 'Tessera', child: tessera, load: tokenLoad(url, [client!]) },
      { name: 'stock oidc-provider', child: stock, load: tokenLoad(stockUrl, [{ id: 'stock', secret: 'stock-secret' }]) },
    ];
    for (let round = 1; round <= ROUNDS; round += 1) {
      for (const { name, child, load: options } of servers) {
        let before = { loop: 0, others: 0 };
        let ownBefore = process.cpuUsage();
        const row = await load(`round ${round}: ${name}, 1 client`, options, ROUND_SECONDS, () => {
          before = threadTicks(child.pid!);
          ownBefore = process.cpuUsage();
        });
        const after = threadTicks(child.pid!);
        const own = process.cpuUsage(ownBefore);
        const requests = row.rps * ROUND_SECONDS;
        const us = (ticks: number) => Math.round((ticks * 1e6) / perSecond / requests);
        const loop = us(after.loop - before.loop);
        const others = us(after.others - before.others);
        const loader = Math.round((own.user + own.system) / requests);
        say(`  CPU per request: event loop ${loop} µs, other threads ${others} µs, server ${loop + others} µs; load generator ${loader} µs`);
      }
    }
  } finally {
    for (const child of started) await stop(child);
  }
}

/** Token endpoint, 1 client, cached credentials: SQLite ×1, PostgreSQL ×1 and ×2 instances. */
async function scaleRun(dir: string, port: number): Promise<void> {
  const base = process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
  const schema = `tessera_bench_${process.pid}`;
  const admin = new pg.Client({ connectionString: base });
  await admin.connect();
  await admin.query(`create schema ${schema}`);
  try {
    const pgUrl = new URL(base);
    pgUrl.searchParams.set('options', `-c search_path=${schema}`);
    // The token rate limit is off (0) except in the last setup, where a limit too high to refuse
    // anything measures the shared bucket's cost: one upsert per token request.
    const setups = [
      { name: 'SQLite, 1 instance', databaseUrl: join(dir, 'scale.db'), instances: 1, rateLimit: '0' },
      { name: 'PostgreSQL, 1 instance', databaseUrl: pgUrl.href, instances: 1, rateLimit: '0' },
      { name: 'PostgreSQL, 2 instances', databaseUrl: pgUrl.href, instances: 2, rateLimit: '0' },
      { name: 'PostgreSQL, 1 instance, shared rate limit', databaseUrl: pgUrl.href, instances: 1, rateLimit: '1000000' },
    ];
    const results = new Map<string, Row>();
    for (const setup of setups) {
      const db = openDatabase(setup.databaseUrl);
      await migrateToLatest(db);
      const [client] = await makeClients(db, clientMaker(ARGON2_DEFAULTS), 1, { client_name: 'scale', audience: [API] });
      await db.destroy();
      const urls = Array.from({ length: setup.instances }, (_, i) => `http://127.0.0.1:${port + i}`);
      const servers: ChildProcess[] = [];
      let ok = 0;
      try {
        for (const [i, url] of urls.entries()) {
          const env = { PORT: String(port + i), ISSUER: `http://127.0.0.1:${port}`, DATABASE_URL: setup.databaseUrl, KEYS_DIR: join(dir, 'scale-keys'), LOG_LEVEL: 'warn', TESSERA_BOOTSTRAP_ADMIN: 'false', TOKEN_RATE_LIMIT: setup.rateLimit, ...extraEnv() };
          servers.push(await startProcess(TESSERA, env, `${url}/.well-known/jwks.json`));
          ok += await warm(url, [client!]);
        }
        const row = await loadSplit(`token, 1 client, ${setup.name}`, urls.map((url) => tokenLoad(url, [client!])));
        results.set(setup.name, row);
        ok += row.ok;
      } finally {
        for (const server of servers) await stop(server);
      }
      // As in the main run: at most one token per connection per run issued to a request cut off.
      const audited = await issuedRows(setup.databaseUrl, client!.id);
      const complete = audited >= ok && audited - ok <= 2 * CONNECTIONS;
      say(`  audit: ${audited} token.issued rows for ${ok} token responses — ${complete ? 'ok' : 'ROWS MISSING'}`);
      if (!complete) process.exitCode = 1;
    }
    const rps = (name: string) => results.get(name)!.rps;
    say('\nratios');
    say(`  PostgreSQL ÷ SQLite (1 instance):              ${(rps('PostgreSQL, 1 instance') / rps('SQLite, 1 instance')).toFixed(2)}`);
    say(`  2 instances ÷ 1 instance (PostgreSQL):         ${(rps('PostgreSQL, 2 instances') / rps('PostgreSQL, 1 instance')).toFixed(2)}`);
    say(`  shared rate limit ÷ none (PostgreSQL):         ${(rps('PostgreSQL, 1 instance, shared rate limit') / rps('PostgreSQL, 1 instance')).toFixed(2)}`);
  } finally {
    await admin.query(`drop schema if exists ${schema} cascade`);
    await admin.end();
  }
}

await main();
