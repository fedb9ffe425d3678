/**
 * Concurrency, end to end: 200 token requests in flight at once against the built server while
 * admin writes (client creation, updates, secret rotations) land at the same time, both from the
 * CLI (another process writing the same SQLite file) and through the admin API. Afterwards the audit
 * log must hold exactly one `token.issued` row per 200 answered, and one `token.failed` row per
 * other answer: no token without its row, no row without its answer.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import {
  API,
  basic,
  countAuditRows,
  createClientWithCli,
  install,
  integrityCheck,
  jtisWithoutAuditRow,
  requestToken,
  startLoad,
  summarize,
  tessera,
  tokensOf,
  type Installation,
} from './e2e-support.js';

let inst: Installation;
beforeEach(async () => {
  inst = await install();
});
afterEach(async () => {
  await inst.cleanup();
});

async function admin(issuer: string, token: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(`${issuer}${path}`, {
    method,
    headers: { Authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'Content-Type': 'application/json' }), ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(30_000),
  });
  const text = await res.text();
  return { status: res.status, etag: res.headers.get('etag'), body: (text ? JSON.parse(text) : undefined) as Record<string, unknown> | undefined };
}

// The admin writes made while the tokens flow.
const CLI_CREATES = ['cli-a', 'cli-b', 'cli-c', 'cli-d'];
const API_CREATES = Array.from({ length: 10 }, (_, i) => `api-${i}`);
const API_PATCHES = 5;
const API_ROTATIONS = 3;

describe('200 concurrent token requests during admin writes', () => {
  it('yields exactly one token.issued row per 200 received and one token.failed row per other answer; every admin write succeeds', async () => {
    const server = await inst.start();
    const banner = server.stderr.join('');
    const adminId = /client_id: +(\S+)/.exec(banner)?.[1];
    const adminSecret = /client_secret: +(tsec_\S+)/.exec(banner)?.[1];
    expect(adminId, banner).toBeDefined();
    expect(adminSecret).toBeDefined();

    const worker = await createClientWithCli(inst.env, 'w');
    const other = await createClientWithCli(inst.env, 'other');
    const auth = basic(worker.client_id, worker.client_secret);

    const adminGrant = await fetch(`${inst.issuer}/oauth/token`, {
      method: 'POST',
      headers: { Authorization: basic(adminId!, adminSecret!), 'Content-Type': 'application/x-www-form-urlencoded' },
      body: 'grant_type=client_credentials',
      signal: AbortSignal.timeout(30_000),
    });
    expect(adminGrant.status).toBe(200);
    const adminToken = ((await adminGrant.json()) as { access_token: string }).access_token;

    // One verified request first, so the load measures the hot path rather than 200 argon2 runs.
    const warm = await requestToken(inst.issuer, auth);
    expect(warm).toMatchObject({ kind: 'token' });

    const load = startLoad({ issuer: inst.issuer, authorization: auth, concurrency: 200, maxRequests: 40_000, durationMs: 60_000, requestTimeoutMs: 45_000 });
    // Each admin write as it came out: a refused write is collected, so the token counts below
    // are still checked and reported.
    const writes: { what: string; ok: boolean; detail: string }[] = [];
    const cli = async (what: string, ...args: string[]) => {
      try {
        await tessera(inst.env, ...args);
        writes.push({ what, ok: true, detail: '' });
      } catch (err) {
        writes.push({ what, ok: false, detail: String((err as Error).message).split('\n').filter((l) => /Error|tessera:/.test(l)).join(' | ') });
      }
    };
    const api = async (what: string, expected: number[], method: string, path: string, body?: unknown, headers?: Record<string, string>) => {
      const res = await admin(inst.issuer, adminToken, method, path, body, headers);
      writes.push({ what, ok: expected.includes(res.status), detail: `${res.status} ${JSON.stringify(res.body)}` });
      return res;
    };
    let writesFinishedWhileLoaded = false;
    try {
      await load.when((o) => o.kind === 'token', 400);

      const viaCli = async () => {
        for (const name of CLI_CREATES) await cli(`cli create ${name}`, 'clients', 'create', '--name', name, '--audience', API, '--json');
        await cli('cli update w', 'clients', 'update', worker.client_id, '--description', 'updated by the cli under load');
        await cli('cli rotate-secret other', 'clients', 'rotate-secret', other.client_id, '--json');
        await cli('cli update other', 'clients', 'update', other.client_id, '--scope', 'read:data');
      };
      const viaApi = async () => {
        for (const name of API_CREATES) await api(`api create ${name}`, [201], 'POST', '/admin/clients', { client_name: name, audience: [API] });
        for (let i = 0; i < API_PATCHES; i += 1) {
          const read = await api(`api read w ${i}`, [200], 'GET', `/admin/clients/${worker.client_id}`);
          // 412 only if the CLI changed the client between this read and this write.
          await api(`api patch w ${i}`, [200, 412], 'PATCH', `/admin/clients/${worker.client_id}`, { description: `patched ${i} under load` }, { 'If-Match': read.etag ?? '' });
        }
        for (let i = 0; i < API_ROTATIONS; i += 1) await api(`api rotate other ${i}`, [201], 'POST', `/admin/clients/${other.client_id}/secrets`, {});
      };
      // Both run to the end even if one throws, so no CLI process outlives the test's directory.
      for (const result of await Promise.allSettled([viaCli(), viaApi()])) if (result.status === 'rejected') throw result.reason;
      // The writes overlapped the load: it was still running when they were done.
      writesFinishedWhileLoaded = load.inFlight() > 0;
    } finally {
      await load.stop();
    }
    expect(writesFinishedWhileLoaded, `the load ended before the writes did: ${summarize(load.outcomes)}`).toBe(true);

    const outcomes = [warm, ...load.outcomes];
    // Every request started got a complete answer: nothing dropped, reset or cut off.
    expect(outcomes.filter((o) => o.kind === 'no-answer' || o.kind === 'truncated' || o.kind === 'malformed'), summarize(outcomes)).toEqual([]);
    const tokens = tokensOf(outcomes);
    const otherAnswers = outcomes.filter((o) => o.kind === 'status');
    const jtis = tokens.map((t) => t.jti);
    expect(new Set(jtis).size).toBe(jtis.length);

    expect(await countAuditRows(inst.databaseUrl, 'token.issued', worker.client_id), summarize(outcomes)).toBe(tokens.length);
    expect(await countAuditRows(inst.databaseUrl, 'token.failed', worker.client_id), summarize(outcomes)).toBe(otherAnswers.length);
    expect(await jtisWithoutAuditRow(inst.databaseUrl, jtis)).toEqual([]);
    // The server did not fail any request under this load.
    expect(otherAnswers, summarize(outcomes)).toEqual([]);

    // The writes themselves all succeeded, each with its audit row.
    const refused = writes.filter((w) => !w.ok);
    expect.soft(refused, `${refused.length} of ${writes.length} admin writes failed under load`).toEqual([]);
    const succeeded = (prefix: string) => writes.filter((w) => w.ok && w.what.startsWith(prefix)).length;
    // The bootstrap admin, w, other, then those created under load.
    expect.soft(await countAuditRows(inst.databaseUrl, 'client.created')).toBe(3 + succeeded('cli create') + succeeded('api create'));
    expect.soft(await countAuditRows(inst.databaseUrl, 'client.secret_rotated', other.client_id)).toBe(succeeded('cli rotate') + succeeded('api rotate'));
    expect(await integrityCheck(inst.databaseUrl)).toEqual(['ok']);

    // And the client still works with its secret after all that.
    expect(await requestToken(inst.issuer, auth)).toMatchObject({ kind: 'token' });
  }, 180_000);
});
