import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';

import { addressUnit } from '../../src/limits/index.js';
import { Backoff } from '../../src/limits/backoff.js';
import { Refusals } from '../../src/limits/refusals.js';
import { TokenRate } from '../../src/limits/token-rate.js';
import { testDialect } from '../support/database.js';
import { basic, startHarness, tamper, TestClock, type Harness } from '../support/harness.js';

const API = 'https://api.example.com';

describe('Backoff', () => {
  const policy = { threshold: 3, windowSeconds: 60, maxSeconds: 8, maxKeys: 2 };

  it('locks a key after `threshold` failures, doubling each time up to the cap', () => {
    const clock = new TestClock(0);
    const backoff = new Backoff(policy, clock);
    backoff.failed('k');
    backoff.failed('k');
    expect(backoff.retryAfter('k')).toBe(0);
    const waits = [3, 4, 5, 6, 7, 8].map(() => (backoff.failed('k'), backoff.retryAfter('k')));
    expect(waits).toEqual([1, 2, 4, 8, 8, 8]);
    clock.advance(8);
    expect(backoff.retryAfter('k')).toBe(0);
  });

  it('forgets failures older than the window', () => {
    const clock = new TestClock(0);
    const backoff = new Backoff(policy, clock);
    backoff.failed('k');
    backoff.failed('k');
    clock.advance(61);
    backoff.failed('k');
    expect(backoff.retryAfter('k')).toBe(0);
    backoff.failed('k');
    backoff.failed('k');
    expect(backoff.retryAfter('k')).toBe(1);
  });

  it('counts in a fixed window: failures trickling in slower than the threshold per window never lock', () => {
    const clock = new TestClock(0);
    const backoff = new Backoff(policy, clock);
    // Every 40 s: never three within one 60 s window, though always two within 60 s of each other.
    for (let i = 0; i < 30; i += 1) {
      backoff.failed('k');
      expect(backoff.retryAfter('k')).toBe(0);
      clock.advance(40);
    }
  });

  it('never reports a wait beyond the cap after the clock steps back', () => {
    const clock = new TestClock(3_600_000);
    const backoff = new Backoff(policy, clock);
    for (let i = 0; i < 6; i += 1) backoff.failed('k');
    expect(backoff.retryAfter('k')).toBe(8);
    clock.advance(-3600);
    expect(backoff.retryAfter('k')).toBe(8);
    // And the wait it reports is the wait it means.
    clock.advance(8);
    expect(backoff.retryAfter('k')).toBe(0);
    // Its window began at the step back, and ends a window later.
    backoff.failed('k');
    clock.advance(61);
    backoff.failed('k');
    expect(backoff.retryAfter('k')).toBe(0);
  });

  it('keeps a lock running past the window, through a failure or a shared count seen after it', () => {
    // AUTH_BACKOFF_MAX_* longer than AUTH_FAILURE_WINDOW: a lock outlives the failures behind it.
    const clock = new TestClock(0);
    const backoff = new Backoff({ ...policy, windowSeconds: 60, maxSeconds: 900 }, clock);
    backoff.observe('k', 14); // locked for 2^11 s, capped at 900
    expect(backoff.retryAfter('k')).toBe(900);
    clock.advance(61);
    backoff.failed('k');
    expect(backoff.retryAfter('k')).toBe(839);
    clock.advance(61);
    backoff.observe('k', 4);
    expect(backoff.retryAfter('k')).toBe(778);
  });

  it('keeps at most maxKeys keys', () => {
    const backoff = new Backoff({ ...policy, threshold: 1 }, new TestClock(0));
    ['a', 'b', 'c'].forEach((k) => backoff.failed(k));
    expect(['a', 'b', 'c'].map((k) => backoff.retryAfter(k))).toEqual([0, 1, 1]);
  });
});

describe('TokenRate', () => {
  it('allows a minute of tokens at once, then refills continuously', () => {
    const clock = new TestClock(0);
    const rate = new TokenRate(clock, 10);
    expect([1, 2, 3].map(() => rate.take('c', 3))).toEqual([0, 0, 0]);
    expect(rate.take('c', 3)).toBe(20);
    clock.advance(20);
    expect(rate.take('c', 3)).toBe(0);
    expect(rate.take('c', 3)).toBeGreaterThan(0);
  });

  it('neither refills nor drains when the clock steps back', () => {
    const clock = new TestClock(3_600_000);
    const rate = new TokenRate(clock, 10);
    expect([rate.take('c', 2), rate.take('c', 2)]).toEqual([0, 0]);
    clock.advance(-3600);
    expect(rate.take('c', 2)).toBe(30);
    // The wait it reports is the wait it means.
    clock.advance(30);
    expect(rate.take('c', 2)).toBe(0);
  });

  it('never limits a rate of 0', () => {
    const rate = new TokenRate(new TestClock(0), 10);
    expect(Array.from({ length: 1000 }, () => rate.take('c', 0)).every((w) => w === 0)).toBe(true);
  });
});

describe('limits at the endpoints', () => {
  let h: Harness;

  beforeAll(async () => {
    h = await startHarness({ AUTH_FAILURES_PER_CLIENT: '2', AUTH_FAILURES_PER_ADDRESS: '1000000', AUTH_BACKOFF_MAX_CLIENT: '4', TOKEN_RATE_LIMIT: '300' });
  });
  afterAll(() => h.close());

  const token = (authorization: string, form: Record<string, string> = {}) =>
    h.request.post('/oauth/token').set('Authorization', authorization).type('form').send({ grant_type: 'client_credentials', ...form });

  const expectThrottled = (res: { status: number; headers: Record<string, string>; body: Record<string, unknown> }) => {
    expect(res.status).toBe(429);
    expect(Number(res.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(res.body.error).toBe('temporarily_unavailable');
    expect(typeof res.body.error_description).toBe('string');
    expect(res.body.access_token).toBeUndefined();
  };

  it('backs a client_id off after failed guesses, known or not, alike', async () => {
    const { client, secret } = await h.createClient({ client_name: 'guessed', audience: [API] });
    for (const id of [client.clientId, 'no-such-client']) {
      expect((await token(basic(id, tamper(secret)))).status).toBe(401);
      expect((await token(basic(id, tamper(secret)))).status).toBe(401);
      const refused = await token(basic(id, tamper(secret)));
      expectThrottled(refused);
    }
    // The right secret, never verified before, waits too: it would cost argon2 to tell.
    expectThrottled(await token(basic(client.clientId, secret)));
    h.clock.advance(5);
    expect((await token(basic(client.clientId, secret))).status).toBe(200);
  });

  it("answers the same whether or not the id's workload authenticated between the guesses", async () => {
    // Clearing the failures on a success would show a guesser which ids are in use.
    const { client, secret } = await h.createClient({ client_name: 'in-use', audience: [API] });
    expect((await token(basic(client.clientId, secret))).status).toBe(200);
    for (const id of [client.clientId, 'unused-id']) {
      expect((await token(basic(id, tamper(secret)))).status).toBe(401);
      if (id === client.clientId) expect((await token(basic(client.clientId, secret))).status).toBe(200);
      expect((await token(basic(id, tamper(secret)))).status).toBe(401);
      expectThrottled(await token(basic(id, tamper(secret))));
    }
    h.clock.advance(5);
  });

  it('lets a caller with a recently verified secret through a client_id back-off', async () => {
    const { client, secret } = await h.createClient({ client_name: 'attacked', audience: [API] });
    expect((await token(basic(client.clientId, secret))).status).toBe(200);
    await token(basic(client.clientId, tamper(secret)));
    await token(basic(client.clientId, tamper(secret)));
    expectThrottled(await token(basic(client.clientId, tamper(secret))));
    expect((await token(basic(client.clientId, secret))).status).toBe(200);
  });

  it('refuses a client beyond its token rate, and audits the refusals aggregated', async () => {
    const { client, secret } = await h.createClient({ client_name: 'chatty', audience: [API], token_rate_limit: 2 });
    expect((await token(basic(client.clientId, secret))).status).toBe(200);
    expect((await token(basic(client.clientId, secret))).status).toBe(200);
    const refused = await token(basic(client.clientId, secret));
    expectThrottled(refused);
    expect(refused.body.error_description).toMatch(/reuse a token/);
    expect(Number(refused.headers['retry-after'])).toBe(30);
    for (let i = 0; i < 5; i++) expectThrottled(await token(basic(client.clientId, secret)));

    const rows = (await h.auditRows()).filter((r) => r.client_id === client.clientId);
    expect(rows.filter((r) => r.type === 'token.issued')).toHaveLength(2);
    expect(rows.filter((r) => r.reason === 'token_rate_limited').map((r) => r.type)).toEqual(['token.failed']);
    await h.limits.refusals.flush();
    const summary = (await h.auditRows('limit.refused')).filter((r) => r.client_id === client.clientId);
    expect(summary).toHaveLength(1);
    expect(summary[0]!.reason).toBe('token_rate_limited');
    expect(JSON.parse(summary[0]!.details!)).toMatchObject({ refused: 5 });

    h.clock.advance(30);
    expect((await token(basic(client.clientId, secret))).status).toBe(200);
  });

});

describe('the token rate a client gets', () => {
  let h: Harness;

  beforeAll(async () => {
    h = await startHarness({ TOKEN_RATE_LIMIT: '3' });
  });
  afterAll(() => h.close());

  /** The statuses of `count` token requests in a row for a client made with `settings`. */
  async function statuses(name: string, settings: { token_rate_limit?: number }, count: number): Promise<number[]> {
    const { client, secret } = await h.createClient({ client_name: name, audience: [API], ...settings });
    const got: number[] = [];
    for (let i = 0; i < count; i += 1) {
      got.push((await h.request.post('/oauth/token').set('Authorization', basic(client.clientId, secret)).type('form').send({ grant_type: 'client_credentials' })).status);
    }
    return got;
  }

  it('is TOKEN_RATE_LIMIT when the client has none of its own', async () => {
    expect(await statuses('server-default', {}, 5)).toEqual([200, 200, 200, 429, 429]);
  });

  it("is the client's own when it has one, above the server's or below it", async () => {
    expect(await statuses('more', { token_rate_limit: 5 }, 6)).toEqual([200, 200, 200, 200, 200, 429]);
    expect(await statuses('fewer', { token_rate_limit: 1 }, 2)).toEqual([200, 429]);
  });

  it('is no limit at all when the client has 0', async () => {
    expect(await statuses('unlimited', { token_rate_limit: 0 }, 10)).toEqual(Array(10).fill(200));
  });
});

describe('back-off per source address', () => {
  let h: Harness;

  beforeAll(async () => {
    h = await startHarness({ AUTH_FAILURES_PER_ADDRESS: '3', AUTH_FAILURES_PER_CLIENT: '1000000' });
  });
  afterAll(() => h.close());

  it('refuses every client from an address that keeps guessing, at the token endpoint and introspection alike', async () => {
    const { client, secret } = await h.createClient({ client_name: 'bystander', audience: [API], introspection_audiences: ['*'] });
    for (const id of ['a-1', 'a-2', 'a-3']) expect((await h.request.post('/oauth/token').set('Authorization', basic(id, tamper(secret))).type('form').send({ grant_type: 'client_credentials' })).status).toBe(401);

    const tokenRes = await h.request.post('/oauth/token').set('Authorization', basic(client.clientId, secret)).type('form').send({ grant_type: 'client_credentials' });
    expect(tokenRes.status).toBe(429);
    const introspectRes = await h.request.post('/oauth/introspect').set('Authorization', basic(client.clientId, secret)).type('form').send({ token: 'x' });
    expect(introspectRes.status).toBe(429);
    expect(introspectRes.headers['retry-after']).toBeDefined();
    expect(introspectRes.body.error).toBe('temporarily_unavailable');

    h.clock.advance(2);
    expect((await h.request.post('/oauth/token').set('Authorization', basic(client.clientId, secret)).type('form').send({ grant_type: 'client_credentials' })).status).toBe(200);
  });
});

/**
 * For the calling describe: a server behind a proxy (TRUST_PROXY=true) that locks an address after
 * two failures, and a wrong guess from whatever address the proxy names.
 */
function guessesBehindProxy(env: Record<string, string> = {}) {
  const fixture = {} as { h: Harness };
  beforeAll(async () => {
    fixture.h = await startHarness({ TRUST_PROXY: 'true', AUTH_FAILURES_PER_ADDRESS: '2', AUTH_FAILURES_PER_CLIENT: '1000000', ...env });
  });
  afterAll(() => fixture.h.close());
  const attempt = (forwardedFor: string) =>
    fixture.h.request.post('/oauth/token').set('Authorization', basic('guesser', 'wrong')).set('X-Forwarded-For', forwardedFor).type('form').send({ grant_type: 'client_credentials' });
  return { fixture, attempt };
}

describe('the address behind a proxy (TRUST_PROXY=true)', () => {
  const { attempt } = guessesBehindProxy();

  it('is the one the proxy saw, so a caller cannot dodge the limit by prepending addresses', async () => {
    expect((await attempt('198.51.100.1, 203.0.113.9')).status).toBe(401);
    expect((await attempt('198.51.100.2, 203.0.113.9')).status).toBe(401);
    expect((await attempt('198.51.100.3, 203.0.113.9')).status).toBe(429);
    expect((await attempt('203.0.113.10')).status).toBe(401);
  });

  it('counts each IPv6 address as its own by default, and an IPv4 address written as IPv6 as that address', async () => {
    expect((await attempt('2001:db8:9:2::1')).status).toBe(401);
    expect((await attempt('2001:db8:9:2::2')).status).toBe(401);
    expect((await attempt('2001:DB8:9:2:0::1')).status).toBe(401);
    expect((await attempt('2001:db8:9:2::1')).status).toBe(429);
    expect((await attempt('2001:db8:9:2::3')).status).toBe(401);

    expect((await attempt('::ffff:192.0.2.7')).status).toBe(401);
    expect((await attempt('192.0.2.7')).status).toBe(401);
    expect((await attempt('::ffff:c000:207')).status).toBe(429);
  });
});

describe('the address behind a proxy, with AUTH_IPV6_PREFIX=64', () => {
  const { fixture, attempt } = guessesBehindProxy({ AUTH_IPV6_PREFIX: '64', ARGON2_CONCURRENCY: '1', ARGON2_QUEUE: '2' });

  it('counts an IPv6 /64 as one address', async () => {
    expect((await attempt('2001:db8:1:2::1')).status).toBe(401);
    expect((await attempt('2001:db8:1:2:ffff:ffff:ffff:fffe')).status).toBe(401);
    expect((await attempt('2001:DB8:1:2::3')).status).toBe(429);
    expect((await attempt('2001:db8:1:3::1')).status).toBe(401);
  });

  it('aggregates the refusals of a /64 in the audit log as those of one address', async () => {
    // Each from its own address in one /64, all at once: the argon2 queue overflows.
    const answers = await Promise.all(Array.from({ length: 12 }, (_, i) => attempt(`2001:db8:5:6::${i + 1}`)));
    expect(answers.filter((res) => res.status === 503).length).toBeGreaterThan(1);
    expect((await fixture.h.auditRows('token.failed')).filter((row) => row.reason === 'overloaded')).toHaveLength(1);
  });
});

describe('addressUnit', () => {
  it.each([
    ['192.0.2.7', 64, '192.0.2.7'],
    ['::ffff:192.0.2.7', 128, '192.0.2.7'],
    ['::FFFF:c000:0207', 64, '192.0.2.7'],
    ['2001:db8::9', 64, '2001:db8:0:0:0:0:0:0/64'],
    ['2001:0db8:0000:0000:1234::9', 64, '2001:db8:0:0:0:0:0:0/64'],
    ['2001:db8:0:0:1234::9', 128, '2001:db8:0:0:1234:0:0:9'],
    ['2001:DB8::1234:0:0:9', 128, '2001:db8:0:0:1234:0:0:9'],
    ['2001:db8:abcd:ef12::9', 56, '2001:db8:abcd:ef00:0:0:0:0/56'],
    ['fe80::1%eth0', 64, 'fe80:0:0:0:0:0:0:0/64'],
    ['::1', 128, '0:0:0:0:0:0:0:1'],
    ['64:ff9b::192.0.2.7', 128, '64:ff9b:0:0:0:0:c000:207'],
    ['not an address', 64, 'not an address'],
  ])('%s with AUTH_IPV6_PREFIX=%i counts as %s', (address, prefix, unit) => {
    expect(addressUnit(address, prefix)).toBe(unit);
  });
});

describe('the client_id back-off', () => {
  let h: Harness;

  beforeAll(async () => {
    h = await startHarness({ TRUST_PROXY: 'true', AUTH_FAILURES_PER_CLIENT: '2', AUTH_FAILURES_PER_ADDRESS: '1000000' });
  });
  afterAll(() => h.close());

  const token = (authorization: string, from: string) =>
    h.request.post('/oauth/token').set('Authorization', authorization).set('X-Forwarded-For', from).type('form').send({ grant_type: 'client_credentials' });

  it("holds a guesser's address only: the workload, calling from elsewhere with a secret not verified lately, gets its token", async () => {
    const { client, secret } = await h.createClient({ client_name: 'targeted', audience: [API] });
    for (const from of ['198.51.100.7', '198.51.100.8']) {
      expect((await token(basic(client.clientId, tamper(secret)), from)).status).toBe(401);
      expect((await token(basic(client.clientId, tamper(secret)), from)).status).toBe(401);
      expect((await token(basic(client.clientId, tamper(secret)), from)).status).toBe(429);
    }
    expect((await token(basic(client.clientId, secret), '10.0.0.1')).status).toBe(200);
  });
});

describe('refusal summaries', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ AUTH_FAILURES_PER_CLIENT: '1', AUTH_FAILURES_PER_ADDRESS: '1000000' });
  });
  afterAll(() => h.close());

  it('record a presented client_id scrubbed, so a secret sent as the id never reaches the audit log', async () => {
    const { secret } = await h.createClient({ client_name: 'swapped', audience: [API] });
    const swapped = () => h.request.post('/oauth/token').set('Authorization', basic(secret, 'whatever-secret')).type('form').send({ grant_type: 'client_credentials' });
    expect((await swapped()).status).toBe(401);
    for (let i = 0; i < 3; i++) expect((await swapped()).status).toBe(429);
    await h.limits.refusals.flush();
    const [summary] = await h.auditRows('limit.refused');
    expect(summary?.client_id).toBe('tsec_[redacted]');
  });

  it('keep only digests of presented ids and addresses in the state shared on PostgreSQL', async () => {
    const { secret } = await h.createClient({ client_name: 'swapped again', audience: [API] });
    expect((await h.request.post('/oauth/token').set('Authorization', basic(secret, 'whatever-secret')).type('form').send({ grant_type: 'client_credentials' })).status).toBe(401);
    // The failure is shared just after the answer.
    const rows = await vi.waitFor(async () => {
      const found = await h.db.selectFrom('limit_failures').select('key').execute();
      if (testDialect === 'postgres' && found.length < 2) throw new Error('not shared yet');
      return found.map((r) => r.key);
    });
    // SQLite keeps limits in memory; on PostgreSQL, one row for the client_id and one for the address.
    expect(testDialect === 'postgres' ? rows.length >= 2 : rows.length === 0).toBe(true);
    for (const key of rows) expect(key).toMatch(/^(client|address):[A-Za-z0-9_-]{43}$/);
    expect(rows.join()).not.toContain(secret.slice(5, 20));
  });
});

describe('Refusals', () => {
  it('counts refusals of keys beyond its bound in one summary row instead of remembering them', async () => {
    const h = await startHarness();
    try {
      const refusals = new Refusals(h.service.auditLog, h.clock, 2);
      const key = (value: string) => ({ kind: 'address' as const, value, reason: 'auth_backoff' });
      expect(['a', 'b', 'a'].map((v) => refusals.admit(key(v)))).toEqual([true, true, false]);
      expect(['c', 'd', 'c'].map((v) => refusals.admit(key(v)))).toEqual([false, false, false]);
      await refusals.flush();
      const rows = await h.auditRows('limit.refused');
      expect(rows.map((r) => [r.remote_addr, r.reason, (JSON.parse(r.details!) as { refused: number }).refused])).toEqual([
        ['a', 'auth_backoff', 1],
        ['*', 'many_keys', 3],
      ]);
    } finally {
      await h.close();
    }
  });
});
