/**
 * GET /metrics: Prometheus text format from the app's own registry. Each token, introspection and
 * revocation answer is counted exactly once by outcome; nothing secret and no presented client_id
 * appears; per-client labels only when asked for, only on METRICS_PORT, only for real clients.
 */
import { sql } from 'kysely';
import supertest from 'supertest';
import { afterEach, describe, expect, it } from 'vitest';

import { auditEvent } from '../../src/audit/audit-log.js';
import { revokeClientTokens } from '../../src/clients/client.service.js';
import { loadConfig, type ConfigError } from '../../src/config.js';
import { createLogger } from '../../src/log.js';
import { createMetricsApp } from '../../src/ops/metrics.js';
import { API, install, type Installation } from '../security/e2e-support.js';
import { basic, startHarness, tamper, type Harness } from '../support/harness.js';
import { freePort } from '../support/process.js';

interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/** The samples of a text-format exposition (comments skipped). */
function parse(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match) throw new Error(`not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const [, name, value] of (match[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[name!] = value!;
    samples.push({ name: match[1]!, labels, value: Number(match[3]) });
  }
  return samples;
}

/** The samples of one metric, as `{labels…} value` strings, sorted: for exact comparisons. */
function series(samples: readonly Sample[], name: string): string[] {
  return samples
    .filter((s) => s.name === name)
    .map((s) => `${JSON.stringify(Object.fromEntries(Object.entries(s.labels).sort()))} ${s.value}`)
    .sort();
}

function value(samples: readonly Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  return samples.find((s) => s.name === name && Object.keys(s.labels).length === Object.keys(labels).length && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
}

const harnesses: Harness[] = [];
const start = async (env: Record<string, string> = {}) => {
  const h = await startHarness(env);
  harnesses.push(h);
  return h;
};
afterEach(async () => {
  await Promise.all(harnesses.splice(0).map((h) => h.close()));
});

const token = (h: Harness, auth: string, body = 'grant_type=client_credentials') => h.request.post('/oauth/token').type('form').set('Authorization', auth).send(body);

const UNKNOWN_ID = 'unknown-client-presented-by-a-caller';
const UNKNOWN_SECRET = `tsec_0123456789abcdef_${'x'.repeat(43)}`;

async function scrape(h: Harness): Promise<{ text: string; samples: Sample[] }> {
  const res = await h.request.get('/metrics');
  expect(res.status).toBe(200);
  expect(res.headers['content-type']).toBe('text/plain; version=0.0.4; charset=utf-8');
  expect(res.headers['cache-control']).toBe('no-store');
  return { text: res.text, samples: parse(res.text) };
}

describe('GET /metrics', () => {
  it('counts one issued token, one invalid_client and one introspection exactly, with one issuance in the histogram, and nothing secret', async () => {
    const h = await start();
    const { client, secret } = await h.createClient({ client_name: 'worker', audience: [API] });
    const rs = await h.createClient({ client_name: 'api', introspection_audiences: [API] });

    const issued = await token(h, basic(client.clientId, secret));
    expect(issued.status).toBe(200);
    expect((await token(h, basic(UNKNOWN_ID, UNKNOWN_SECRET))).status).toBe(401);
    const introspected = await h.request.post('/oauth/introspect').type('form').set('Authorization', basic(rs.client.clientId, rs.secret)).send(`token=${issued.body.access_token}`);
    expect(introspected.body.active).toBe(true);

    const { text, samples } = await scrape(h);
    expect(series(samples, 'tessera_token_requests_total')).toEqual(['{"error":"invalid_client","outcome":"failed"} 1', '{"outcome":"issued"} 1']);
    expect(value(samples, 'tessera_token_issuance_seconds_count')).toBe(1);
    expect(value(samples, 'tessera_token_issuance_seconds_sum')).toBeGreaterThan(0);
    expect(value(samples, 'tessera_token_issuance_seconds_bucket', { le: '+Inf' })).toBe(1);
    expect(series(samples, 'tessera_introspection_requests_total')).toEqual(['{"result":"active"} 1']);
    expect(series(samples, 'tessera_revocation_requests_total')).toEqual([]);
    // Two secrets verified for the first time (worker, api); an unknown client is no cache lookup.
    expect(value(samples, 'tessera_credential_cache_hits_total')).toBe(0);
    expect(value(samples, 'tessera_credential_cache_misses_total')).toBe(2);
    expect(value(samples, 'tessera_credential_cache_entries')).toBe(2);
    expect(series(samples, 'tessera_signing_keys')).toEqual(['{"state":"active"} 1', '{"state":"next"} 0', '{"state":"retired"} 0', '{"state":"revoked"} 0']);
    expect(value(samples, 'tessera_argon2_queue_depth')).toBe(0);
    expect(value(samples, 'tessera_argon2_in_flight')).toBe(0);
    expect(value(samples, 'tessera_audit_queue_depth')).toBe(0);
    // Each answer above waited for its own audit commit.
    expect(value(samples, 'tessera_audit_commit_seconds_count')).toBeGreaterThanOrEqual(3);
    expect(value(samples, 'tessera_audit_commit_failures_total')).toBe(0);
    // Node's process metrics. CPU counters count from the registry's creation and can
    // still read 0 on a busy machine, so only their presence is certain.
    expect(value(samples, 'process_cpu_user_seconds_total')).toBeGreaterThanOrEqual(0);
    const started = value(samples, 'process_start_time_seconds');
    expect(started).toBeGreaterThan(0);
    expect(started).toBeLessThanOrEqual(Date.now() / 1000);
    expect(samples.some((s) => s.name === 'nodejs_heap_size_used_bytes')).toBe(true);

    // No credential, token or client id: not even the one a caller presented.
    for (const sensitive of [secret, rs.secret, issued.body.access_token as string, UNKNOWN_SECRET, UNKNOWN_ID, client.clientId, rs.client.clientId]) {
      expect(text).not.toContain(sensitive);
    }
    expect(text).not.toMatch(/tsec_|eyJ|client_id=/);
  });

  it('counts a cache hit when a verified secret comes back', async () => {
    const h = await start();
    const { client, secret } = await h.createClient({ client_name: 'worker', audience: [API] });
    for (let i = 0; i < 3; i += 1) expect((await token(h, basic(client.clientId, secret))).status).toBe(200);
    // A wrong secret for an existing secret id: a miss, and argon2.
    expect((await token(h, basic(client.clientId, tamper(secret)))).status).toBe(401);
    const { samples } = await scrape(h);
    expect(value(samples, 'tessera_credential_cache_hits_total')).toBe(2);
    expect(value(samples, 'tessera_credential_cache_misses_total')).toBe(2);
    expect(series(samples, 'tessera_token_requests_total')).toEqual(['{"error":"invalid_client","outcome":"failed"} 1', '{"outcome":"issued"} 3']);
    expect(value(samples, 'tessera_token_issuance_seconds_count')).toBe(3);
  });

  it('counts each failure under its RFC error code, and the 429s and 503s of limits and overload as refused', async () => {
    const h = await start({ ARGON2_CONCURRENCY: '1', ARGON2_QUEUE: '0' });
    const scoped = await h.createClient({ client_name: 'scoped', audience: [API], scope: 'read' });
    const limited = await h.createClient({ client_name: 'limited', audience: [API], token_rate_limit: 1 });
    const auth = basic(scoped.client.clientId, scoped.secret);
    expect((await token(h, auth, 'grant_type=client_credentials&scope=write')).body.error).toBe('invalid_scope');
    expect((await token(h, auth, 'grant_type=password')).body.error).toBe('unsupported_grant_type');
    expect((await h.request.post('/oauth/token').type('form').send('grant_type=client_credentials')).status).toBe(401);
    expect((await token(h, basic(limited.client.clientId, limited.secret))).status).toBe(200);
    expect((await token(h, basic(limited.client.clientId, limited.secret))).status).toBe(429);

    // argon2 overload: one verification at a time and none waiting.
    const flood = await Promise.all(Array.from({ length: 6 }, (_, i) => token(h, basic(`attacker-${i}`, UNKNOWN_SECRET))));
    const overloaded = flood.filter((r) => r.status === 503).length;
    expect(overloaded).toBeGreaterThan(0);
    expect(flood.every((r) => r.status === 503 || r.status === 401)).toBe(true);

    // A 503 a retry gets past that is not about capacity: a failure, not a refusal.
    const revoked = await h.createClient({ client_name: 'revoked', audience: [API] });
    h.clock.freeze();
    await revokeClientTokens(h.service, revoked.client.clientId);
    expect((await token(h, basic(revoked.client.clientId, revoked.secret))).status).toBe(503);
    h.clock.sync();

    const { samples } = await scrape(h);
    expect(value(samples, 'tessera_token_requests_total', { outcome: 'failed', error: 'temporarily_unavailable' })).toBe(1);
    expect(value(samples, 'tessera_token_requests_total', { outcome: 'failed', error: 'invalid_scope' })).toBe(1);
    expect(value(samples, 'tessera_token_requests_total', { outcome: 'failed', error: 'unsupported_grant_type' })).toBe(1);
    expect(value(samples, 'tessera_token_requests_total', { outcome: 'failed', error: 'invalid_client' })).toBe(1 + flood.length - overloaded);
    expect(value(samples, 'tessera_token_requests_total', { outcome: 'issued' })).toBe(1);
    // The token rate limit (429) and the argon2 overload (503) answer temporarily_unavailable.
    expect(value(samples, 'tessera_token_requests_total', { outcome: 'refused', error: 'temporarily_unavailable' })).toBe(1 + overloaded);
    const total = samples.filter((s) => s.name === 'tessera_token_requests_total').reduce((sum, s) => sum + s.value, 0);
    expect(total).toBe(6 + flood.length);
    expect(value(samples, 'tessera_token_issuance_seconds_count')).toBe(1);
  });

  it('counts a token withheld because its audit row failed as server_error, not issued', async () => {
    const h = await start();
    const { client, secret } = await h.createClient({ client_name: 'worker', audience: [API] });
    await sql`DROP TABLE audit_events`.execute(h.db);
    expect((await token(h, basic(client.clientId, secret))).status).toBe(500);
    const { samples } = await scrape(h);
    expect(series(samples, 'tessera_token_requests_total')).toEqual(['{"error":"server_error","outcome":"failed"} 1']);
    expect(value(samples, 'tessera_token_issuance_seconds_count')).toBe(0);
    expect(value(samples, 'tessera_audit_commit_failures_total')).toBe(1);
  });

  it('counts introspection and revocation by result', async () => {
    const h = await start();
    const { client, secret } = await h.createClient({ client_name: 'worker', audience: [API] });
    const auth = basic(client.clientId, secret);
    const issued = (await token(h, auth)).body.access_token as string;
    const introspect = (a: string, t: string) => h.request.post('/oauth/introspect').type('form').set('Authorization', a).send(`token=${t}`);
    const revoke = (a: string, t: string) => h.request.post('/oauth/revoke').type('form').set('Authorization', a).send(`token=${t}`);

    // The worker may not introspect its own audience: inactive.
    expect((await introspect(auth, issued)).body).toEqual({ active: false });
    expect((await introspect(basic(UNKNOWN_ID, UNKNOWN_SECRET), issued)).status).toBe(401);
    expect((await revoke(auth, issued)).status).toBe(200);
    expect((await revoke(auth, issued)).status).toBe(200);
    expect((await revoke(auth, 'garbage')).status).toBe(200);
    expect((await h.request.post('/oauth/revoke').type('form').set('Authorization', auth).send('')).status).toBe(400);

    const { samples } = await scrape(h);
    expect(series(samples, 'tessera_introspection_requests_total')).toEqual(['{"error":"invalid_client","result":"error"} 1', '{"result":"inactive"} 1']);
    expect(series(samples, 'tessera_revocation_requests_total')).toEqual([
      '{"error":"invalid_request","result":"error"} 1',
      '{"result":"revoked"} 1',
      '{"result":"unchanged"} 2',
    ]);
  });

  it('reads the argon2 pool and the audit queue when scraped', async () => {
    const h = await start({ ARGON2_CONCURRENCY: '1', ARGON2_QUEUE: '4', ARGON2_TIME_COST: '10' });
    const hashes = Promise.all([h.hasher.hash('one-secret-value'), h.hasher.hash('two-secret-value'), h.hasher.hash('three-secret-value')]);
    let samples = parse((await h.metrics.render()).body);
    expect(value(samples, 'tessera_argon2_in_flight')).toBe(1);
    expect(value(samples, 'tessera_argon2_queue_depth')).toBe(2);
    await hashes;

    // Rows recorded in this turn of the event loop wait together for the next group commit.
    const recorded = [1, 2].map(() => h.service.auditLog.record(auditEvent({ type: 'test.event', outcome: 'success' })));
    samples = parse((await h.metrics.render()).body);
    expect(value(samples, 'tessera_audit_queue_depth')).toBe(2);
    await Promise.all(recorded);
    samples = parse((await h.metrics.render()).body);
    expect(value(samples, 'tessera_audit_queue_depth')).toBe(0);
  });

  it('keeps a registry per app: two apps in one process count separately', async () => {
    const [a, b] = [await start(), await start()];
    const { client, secret } = await a.createClient({ client_name: 'worker', audience: [API] });
    expect((await token(a, basic(client.clientId, secret))).status).toBe(200);
    expect(value((await scrape(a)).samples, 'tessera_token_requests_total', { outcome: 'issued' })).toBe(1);
    expect(series((await scrape(b)).samples, 'tessera_token_requests_total')).toEqual([]);
  });
});

describe('per-client labels and METRICS_PORT', () => {
  it('with METRICS_PORT, serves /metrics there only; with METRICS_CLIENT_LABELS, labels authenticated clients only', async () => {
    const h = await start({ METRICS_PORT: '9464', METRICS_CLIENT_LABELS: 'true' });
    expect((await h.request.get('/metrics')).status).toBe(404);
    const metricsPort = supertest(createMetricsApp(h.metrics, createLogger('silent')).callback());
    expect((await metricsPort.get('/oauth/token')).status).toBe(404);

    // Two tokens a minute: the refused scope takes one, the issued token the other.
    const { client, secret } = await h.createClient({ client_name: 'worker', audience: [API], scope: 'read', token_rate_limit: 2 });
    const auth = basic(client.clientId, secret);
    expect((await token(h, auth, 'grant_type=client_credentials&scope=write')).status).toBe(400);
    expect((await token(h, auth)).status).toBe(200);
    expect((await token(h, auth)).status).toBe(429);
    // Unknown id, and a wrong secret for the real id: nobody proved anything, so no client label.
    expect((await token(h, basic(UNKNOWN_ID, UNKNOWN_SECRET))).status).toBe(401);
    expect((await token(h, basic(client.clientId, tamper(secret)))).status).toBe(401);

    const res = await metricsPort.get('/metrics');
    expect(res.status).toBe(200);
    expect(series(parse(res.text), 'tessera_token_requests_total')).toEqual(
      [
        `{"client_id":"","error":"invalid_client","outcome":"failed"} 2`,
        `{"client_id":"${client.clientId}","error":"invalid_scope","outcome":"failed"} 1`,
        `{"client_id":"${client.clientId}","error":"temporarily_unavailable","outcome":"refused"} 1`,
        `{"client_id":"${client.clientId}","outcome":"issued"} 1`,
      ].sort(),
    );
    expect(res.text).not.toContain(UNKNOWN_ID);
    expect(res.text).not.toContain(secret);
    expect((await metricsPort.head('/metrics')).status).toBe(200);
  });

  it('has no client_id label by default', async () => {
    const h = await start();
    const { client, secret } = await h.createClient({ client_name: 'worker', audience: [API] });
    expect((await token(h, basic(client.clientId, secret))).status).toBe(200);
    const { text } = await scrape(h);
    expect(text).not.toContain('client_id');
    expect(text).not.toContain(client.clientId);
  });

  it('validates METRICS_PORT and METRICS_CLIENT_LABELS', () => {
    const problems = (env: Record<string, string>): string[] => {
      try {
        loadConfig({ DATABASE_URL: 'x.db', ...env });
        return [];
      } catch (err) {
        return (err as ConfigError).problems.slice();
      }
    };
    expect(loadConfig({ DATABASE_URL: 'x.db' })).toMatchObject({ metricsPort: undefined, metricsClientLabels: false });
    expect(loadConfig({ DATABASE_URL: 'x.db', METRICS_PORT: '9464', METRICS_CLIENT_LABELS: 'true' })).toMatchObject({ metricsPort: 9464, metricsClientLabels: true });
    expect(problems({ METRICS_PORT: 'nine' })).toEqual(['METRICS_PORT must be a whole number, got "nine"']);
    expect(problems({ METRICS_PORT: '70000' })).toEqual(['METRICS_PORT must be between 1 and 65535, got 70000']);
    expect(problems({ METRICS_PORT: '3000' })).toEqual(['METRICS_PORT must differ from PORT (3000)']);
    expect(problems({ METRICS_CLIENT_LABELS: 'yes' })).toEqual(['METRICS_CLIENT_LABELS must be true or false, got "yes"']);
    expect(problems({ METRICS_CLIENT_LABELS: 'true' })).toEqual(['METRICS_CLIENT_LABELS=true requires METRICS_PORT, so client ids are not published on the public port']);
  });
});

describe('the server process', () => {
  let inst: Installation | undefined;
  afterEach(async () => {
    await inst?.cleanup();
    inst = undefined;
  });

  it('serves /metrics on METRICS_PORT only, next to the probes on PORT, and closes it on SIGTERM', async () => {
    const metricsPort = await freePort();
    inst = await install({ METRICS_PORT: String(metricsPort), TESSERA_BOOTSTRAP_ADMIN: 'false' });
    const server = await inst.start();
    const metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
    let scraped: Response | undefined;
    for (let i = 0; i < 50 && !scraped; i += 1) {
      scraped = await fetch(metricsUrl).catch(() => undefined);
      if (!scraped) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(scraped?.status).toBe(200);
    expect(await scraped!.text()).toContain('tessera_token_requests_total');
    expect((await fetch(`${inst.issuer}/metrics`)).status).toBe(404);
    expect((await fetch(`${inst.issuer}/healthz`)).status).toBe(200);
    expect(await (await fetch(`${inst.issuer}/readyz`)).json()).toEqual({ status: 'ready', checks: { database: 'ok', migrations: 'ok', signing_key: 'ok', thread_pool: 'ok', audit_log: 'ok' } });

    server.process.kill('SIGTERM');
    expect(await server.exited).toBe(0);
    await expect(fetch(metricsUrl)).rejects.toThrow();
  });
});
