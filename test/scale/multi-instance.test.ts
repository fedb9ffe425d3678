/**
 * Two Tessera processes behind one issuer URL, sharing one PostgreSQL database and one keys
 * directory (README "Scaling out"): what one instance does, the other honours. Runs in the
 * vitest project "postgres" only (vitest.config.ts).
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { decodeJwt, decodeProtectedHeader } from 'jose';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { openDatabase, type Db } from '../../src/db/database.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { freePort, startServer, tessera, type RunningServer } from '../support/process.js';
import { basic, requestToken, startLoad, summarize, tokensOf } from '../security/e2e-support.js';

const API = 'https://api.example.com';
/** The issuer both instances share; each listens on its own port, as behind a load balancer. */
const ISSUER = 'http://localhost:3000';
/** How soon every instance must refuse a client disabled on another (the issue's bound). */
const COHERENCE_BOUND_MS = 2000;

let dir: string;
let database: TestDatabase;
let db: Db;
let env: NodeJS.ProcessEnv;
const servers: RunningServer[] = [];
let a: string;
let b: string;
let workload: { client_id: string; client_secret: string };
let resourceServer: { client_id: string; client_secret: string };
let adminAuth: string;

async function startInstance(): Promise<string> {
  const port = await freePort();
  await startServer({ ...env, PORT: String(port) }, (s) => servers.push(s));
  return `http://127.0.0.1:${port}`;
}

async function createClient(...args: string[]): Promise<{ client_id: string; client_secret: string }> {
  const { stdout } = await tessera(env, 'clients', 'create', ...args, '--json');
  return JSON.parse(stdout) as { client_id: string; client_secret: string };
}

async function token(base: string, client: { client_id: string; client_secret: string }, body = 'grant_type=client_credentials'): Promise<Response> {
  return fetch(`${base}/oauth/token`, {
    method: 'POST',
    headers: { Authorization: basic(client.client_id, client.client_secret), 'Content-Type': 'application/x-www-form-urlencoded' },
    body,
  });
}

async function accessToken(base: string, client = workload): Promise<string> {
  const res = await token(base, client);
  expect(res.status).toBe(200);
  return ((await res.json()) as { access_token: string }).access_token;
}

async function introspect(base: string, value: string): Promise<{ active: boolean }> {
  const res = await fetch(`${base}/oauth/introspect`, {
    method: 'POST',
    headers: { Authorization: basic(resourceServer.client_id, resourceServer.client_secret), 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ token: value }),
  });
  expect(res.status).toBe(200);
  return (await res.json()) as { active: boolean };
}

async function admin(base: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${base}${path}`, {
    method,
    headers: { Authorization: adminAuth, ...(body === undefined ? {} : { 'Content-Type': 'application/json' }), ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
}

/** PATCH with the If-Match the admin API requires. */
async function patchClient(base: string, clientId: string, patch: Record<string, unknown>): Promise<number> {
  const etag = (await admin(base, 'GET', `/admin/clients/${clientId}`)).headers.get('etag')!;
  return (await admin(base, 'PATCH', `/admin/clients/${clientId}`, patch, { 'If-Match': etag })).status;
}

const activeKid = async (base: string) => decodeProtectedHeader(await accessToken(base)).kid;
const publishedKids = async (base: string) => ((await (await fetch(`${base}/.well-known/jwks.json`)).json()) as { keys: { kid: string }[] }).keys.map((k) => k.kid);

async function eventually<T>(probe: () => Promise<T>, done: (value: T) => boolean, withinMs: number): Promise<{ value: T; elapsedMs: number }> {
  const started = Date.now();
  for (;;) {
    const value = await probe();
    const elapsedMs = Date.now() - started;
    if (done(value) || elapsedMs > withinMs) return { value, elapsedMs };
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tessera-scale-'));
  database = await createTestDatabase(dir);
  db = openDatabase(database.url);
  env = {
    ISSUER,
    HOST: '127.0.0.1',
    DATABASE_URL: database.url,
    KEYS_DIR: join(dir, 'keys'),
    KEY_RELOAD_INTERVAL: '1',
    // Publish-ahead is JWKS_MAX_AGE plus one reload: six seconds here, ample to see B publish first.
    JWKS_MAX_AGE: '5',
    // A long cache TTL, so only the change notification can make B refuse within the bound.
    CLIENT_CACHE_TTL: '60',
    TOKEN_RATE_LIMIT: '0',
    TESSERA_BOOTSTRAP_ADMIN: 'false',
  };
  await tessera(env, 'migrate');
  [a, b] = await Promise.all([startInstance(), startInstance()]);
  workload = await createClient('--name', 'workload', '--audience', API);
  resourceServer = await createClient('--name', 'gateway', '--audience', 'https://gateway.example.com', '--introspect', API);
  const operator = await createClient('--name', 'operator', '--admin');
  const adminToken = await fetch(`${a}/oauth/token`, {
    method: 'POST',
    headers: { Authorization: basic(operator.client_id, operator.client_secret), 'Content-Type': 'application/x-www-form-urlencoded' },
    body: `grant_type=client_credentials&audience=${encodeURIComponent(`${ISSUER}/admin`)}`,
  });
  expect(adminToken.status).toBe(200);
  adminAuth = `Bearer ${((await adminToken.json()) as { access_token: string }).access_token}`;
}, 120_000);

afterAll(async () => {
  for (const s of servers) {
    if (s.process.exitCode === null && s.process.signalCode === null) s.process.kill('SIGKILL');
    await s.exited;
  }
  await db?.destroy();
  await database?.drop();
  rmSync(dir, { recursive: true, force: true });
});

describe('two instances on one PostgreSQL database', () => {
  it('a token issued on A is active on B', async () => {
    expect(await introspect(b, await accessToken(a))).toMatchObject({ active: true, client_id: workload.client_id });
  });

  it('a token revoked on B is inactive on A as soon as B has answered', async () => {
    const value = await accessToken(a);
    const res = await fetch(`${b}/oauth/revoke`, {
      method: 'POST',
      headers: { Authorization: basic(resourceServer.client_id, resourceServer.client_secret), 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token: value }),
    });
    expect(res.status).toBe(200);
    expect(await introspect(a, value)).toEqual({ active: false });
  });

  it(`a client disabled on A is refused on B within ${COHERENCE_BOUND_MS} ms, and enabled again the same way`, async () => {
    const client = await createClient('--name', 'to-disable', '--audience', API);
    // B has the client (and its verified secret) cached now.
    expect((await token(b, client)).status).toBe(200);

    expect(await patchClient(a, client.client_id, { enabled: false })).toBe(200);
    const refused = await eventually(() => token(b, client).then((r) => r.status), (status) => status !== 200, COHERENCE_BOUND_MS);
    expect(refused.value).toBe(401);
    expect(refused.elapsedMs).toBeLessThan(COHERENCE_BOUND_MS);

    expect(await patchClient(a, client.client_id, { enabled: true })).toBe(200);
    const served = await eventually(() => token(b, client).then((r) => r.status), (status) => status === 200, COHERENCE_BOUND_MS);
    expect(served.value).toBe(200);
  });

  it(`a secret revoked with the CLI is refused on both within ${COHERENCE_BOUND_MS} ms`, async () => {
    const client = await createClient('--name', 'to-rotate', '--audience', API);
    expect((await token(a, client)).status).toBe(200);
    expect((await token(b, client)).status).toBe(200);
    await tessera(env, 'clients', 'rotate-secret', client.client_id, '--previous-expires-in', '0', '--json');
    for (const base of [a, b]) {
      const refused = await eventually(() => token(base, client).then((r) => r.status), (status) => status !== 200, COHERENCE_BOUND_MS);
      expect(refused.value).toBe(401);
    }
  });

  it('keys rotated on A: B publishes the new key at once and signs with it after the publish-ahead delay', async () => {
    const before = await activeKid(b);
    const res = await admin(a, 'POST', '/admin/keys/rotate');
    expect(res.status).toBe(201);
    const { kid, activate_after } = (await res.json()) as { kid: string; activate_after: string };
    expect(kid).not.toBe(before);

    const published = await eventually(() => publishedKids(b), (kids) => kids.includes(kid), 3000);
    expect(published.value).toContain(kid);
    // From publication until activate_after, B signs with the old key, which gateways already hold;
    // judged by each token's own iat, so a slow machine cannot make this pass or fail by accident.
    const seen: { kid: string; iat: number }[] = [];
    const signing = await eventually(
      async () => {
        const value = await accessToken(b);
        seen.push({ kid: decodeProtectedHeader(value).kid!, iat: decodeJwt(value).iat! });
        return seen.at(-1)!.kid;
      },
      (active) => active === kid,
      15_000,
    );
    expect(signing.value).toBe(kid);
    const activateAfter = Date.parse(activate_after) / 1000;
    expect(seen.filter((t) => t.kid === kid && t.iat < Math.floor(activateAfter))).toEqual([]);
    expect(seen.filter((t) => t.kid === before).length).toBeGreaterThan(0);
    // A switches at its own next reload, within KEY_RELOAD_INTERVAL of B.
    expect((await eventually(() => activeKid(a), (active) => active === kid, 3000)).value).toBe(kid);
  }, 30_000);

  it('a client token rate limit counts the tokens of both instances', async () => {
    const client = await createClient('--name', 'rated', '--audience', API, '--token-rate-limit', '4');
    const statuses: number[] = [];
    for (const base of [a, b, a, b]) statuses.push((await token(base, client)).status);
    expect(statuses).toEqual([200, 200, 200, 200]);
    for (const base of [a, b]) {
      const refused = await token(base, client);
      expect(refused.status).toBe(429);
      expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0);
    }
  });

  it('failed guesses at one client_id on both instances add up to one back-off, applied on both', async () => {
    const client = await createClient('--name', 'guessed', '--audience', API);
    const wrong = { ...client, client_secret: `${client.client_secret.slice(0, -1)}${client.client_secret.endsWith('A') ? 'B' : 'A'}` };
    const pause = () => new Promise((resolve) => setTimeout(resolve, 300));
    // AUTH_FAILURES_PER_CLIENT is 5. An instance shares each failure just after answering it, so
    // the fifth is answered 401 and then locks the client_id (for 1 s, the first step) everywhere.
    for (const base of [a, b, a, b, a]) {
      expect((await token(base, wrong)).status).toBe(401);
      await pause();
    }
    // B has seen two failures itself: only the shared count and A's announcement can hold it.
    expect((await token(b, wrong)).status).toBe(429);
    expect((await token(a, wrong)).status).toBe(429);
  });

  it('keeps serving after notifications no instance can read (any database user can NOTIFY)', async () => {
    for (const payload of ['not json', '{"kind":"client","key":"x"}', '{"kind":"nope","key":"x","until":1}']) {
      await sql`select pg_notify('tessera_limit_locked', ${payload})`.execute(db);
    }
    await sql`select pg_notify('tessera_client_changed', '')`.execute(db);
    await new Promise((resolve) => setTimeout(resolve, 300));
    for (const base of [a, b]) expect((await token(base, workload)).status).toBe(200);
    expect(servers.map((s) => s.process.exitCode)).toEqual([null, null]);
  });

  it('does not believe a lock-out announced by someone else: any database role can NOTIFY', async () => {
    // What a forger can compute: the digest of the address every request here comes from, and of a client_id.
    const digest = (value: string) => createHash('sha256').update(value).digest('base64url');
    for (const [kind, value] of [['address', '127.0.0.1'], ['client', workload.client_id]] as const) {
      const forged = JSON.stringify({ kind, key: digest(value), until: Date.now() + 3_600_000 });
      await sql`select pg_notify('tessera_limit_locked', ${forged})`.execute(db);
    }
    await new Promise((resolve) => setTimeout(resolve, 300));
    // A wrong secret is what the back-offs answer: 429 while locked, 401 otherwise.
    const wrong = { ...workload, client_secret: `${workload.client_secret}x` };
    for (const base of [a, b]) expect((await token(base, wrong)).status).toBe(401);
    for (const base of [a, b]) expect((await token(base, workload)).status).toBe(200);
  });

  it('SIGKILL A under load: B keeps serving, and every token a client received has its audit row', async () => {
    const auth = basic(workload.client_id, workload.client_secret);
    const options = { authorization: auth, concurrency: 8, maxRequests: 5000, durationMs: 15_000, requestTimeoutMs: 10_000 };
    const onA = startLoad({ ...options, issuer: a });
    const onB = startLoad({ ...options, issuer: b });
    await onA.when((o) => o.kind === 'token', 100);
    const victim = servers[0]!;
    victim.process.kill('SIGKILL');
    await victim.exited;
    const killedAt = Date.now();
    const [fromA, fromB] = await Promise.all([onA.done, onB.done]);

    const afterKill = tokensOf(fromB).filter((o) => o.at > killedAt);
    expect(afterKill.length, summarize(fromB)).toBeGreaterThan(0);
    expect(fromB.filter((o) => o.kind !== 'token'), summarize(fromB)).toEqual([]);
    expect((await requestToken(b, auth)).kind).toBe('token');

    const received = [...tokensOf(fromA), ...tokensOf(fromB)].map((o) => o.jti);
    for (const o of tokensOf(fromA)) expect(decodeJwt(o.token).iss).toBe(ISSUER);
    const audited = new Set<string>();
    for (let i = 0; i < received.length; i += 1000) {
      const rows = await db.selectFrom('audit_events').select('jti').where('type', '=', 'token.issued').where('jti', 'in', received.slice(i, i + 1000)).execute();
      for (const row of rows) audited.add(row.jti!);
    }
    expect(received.filter((jti) => !audited.has(jti))).toEqual([]);
  }, 60_000);
});
