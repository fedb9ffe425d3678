import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { createClient } from '../../src/clients/client.service.js';
import { SecretHasher } from '../../src/clients/secret.js';
import { Overloaded } from '../../src/clients/work-pool.js';
import { basic, startHarness, type Harness } from '../support/harness.js';

const API = 'https://api.example.com';
let h: Harness;
beforeEach(async () => {
  h = await startHarness({ ARGON2_CONCURRENCY: '1', ARGON2_QUEUE: '2' });
});
afterEach(() => h.close());

const token = (auth: string) => h.request.post('/oauth/token').type('form').set('Authorization', auth).send('grant_type=client_credentials');

describe('a flood of bad credentials', () => {
  /** Resolves once the flood holds every argon2 slot and fills the queue. */
  const saturated = async () => {
    while (h.hasher.inFlight < 1 || h.hasher.queued < 2) await new Promise((resolve) => setTimeout(resolve, 5));
  };

  it('is refused with 503 temporarily_unavailable and Retry-After once the argon2 queue is full, while cached clients keep getting tokens', async () => {
    const { client, secret } = await h.createClient({ client_name: 'good', audience: [API] });
    expect((await token(basic(client.clientId, secret))).status).toBe(200);
    h.hasher.reset();

    // supertest sends once awaited: then() starts each request now.
    const flood = Array.from({ length: 12 }, (_, i) => token(basic(`attacker-${i}`, 'tsec_0123456789abcdef_' + 'x'.repeat(43))).then((res) => res));
    await saturated();
    const goodRes = await token(basic(client.clientId, secret));
    const floodRes = await Promise.all(flood);

    // Answered from the verified-credential cache, behind a full queue.
    expect(goodRes.status).toBe(200);
    expect(h.hasher.verifies).toBe(0);
    const refused = floodRes.filter((r) => r.status === 503);
    expect(refused.length).toBeGreaterThan(1);
    expect(floodRes.every((r) => r.status === 503 || r.status === 401)).toBe(true);
    for (const res of refused) {
      expect(res.body).toEqual({ error: 'temporarily_unavailable', error_description: 'too many requests are waiting; retry shortly' });
      expect(res.headers['retry-after']).toBe('1');
      expect(res.headers['cache-control']).toBe('no-store');
    }
    // Aggregated per address like any refusal: one row, the rest counted in a summary.
    const reasons = (await h.auditRows('token.failed')).map((r) => r.reason);
    expect(reasons.filter((r) => r === 'overloaded')).toHaveLength(1);
    await h.limits.refusals.flush();
    const summaries = (await h.auditRows('limit.refused')).filter((r) => r.reason === 'overloaded');
    expect(summaries.map((r) => JSON.parse(r.details!) as unknown)).toEqual([expect.objectContaining({ refused: refused.length - 1 })]);
    expect(h.logLines.filter((l) => l.msg === 'token endpoint failed')).toEqual([]);
  });

  it('does not starve a workload whose cached credentials expire while it lasts', async () => {
    const { client, secret } = await h.createClient({ client_name: 'expiring', audience: [API] });
    expect((await token(basic(client.clientId, secret))).status).toBe(200);
    h.clock.advance(h.config.credentialCacheTtl + 1);

    const flood = Array.from({ length: 12 }, (_, i) => token(basic(`attacker-${i}`, 'tsec_0123456789abcdef_' + 'x'.repeat(43))).then((res) => res));
    await saturated();
    h.hasher.reset();
    // Its secret must be verified again, behind a queue full of decoys: it has a lane of its own.
    expect((await token(basic(client.clientId, secret))).status).toBe(200);
    expect(h.hasher.verifies).toBe(1);
    await Promise.all(flood);
  });

  it('is refused the same way at introspection, and aggregated', async () => {
    const results = await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        h.request.post('/oauth/introspect').type('form').set('Authorization', basic(`attacker-${i}`, 'wrong')).send('token=abc'),
      ),
    );
    const refused = results.filter((r) => r.status === 503);
    expect(refused.length).toBeGreaterThan(1);
    expect(refused[0]!.body.error).toBe('temporarily_unavailable');
    expect(refused[0]!.headers['retry-after']).toBe('1');
    const rows = (await h.auditRows('token.introspected')).filter((r) => r.reason === 'overloaded');
    expect(rows).toHaveLength(1);
  });
});

describe('argon2 parameters', () => {
  it('re-hashes a secret stored with outdated parameters on its next successful use', async () => {
    const weak = new SecretHasher({ memoryCost: 8192, timeCost: 1, parallelism: 1 }, { concurrency: 1, queue: 8 });
    const { client, clientSecret } = await createClient({ ...h.service, hasher: weak }, { client_name: 'old', audience: [API] });
    const stored = async () => (await h.db.selectFrom('client_secrets').select('hash').where('client_id', '=', client.clientId).executeTakeFirstOrThrow()).hash;
    expect(await stored()).toMatch(/m=8192,p=1,t=1/);

    expect((await token(basic(client.clientId, clientSecret))).status).toBe(200);
    expect(await stored()).toMatch(/^\$argon2id\$v=19\$m=19456,p=1,t=2\$/);
    expect((await token(basic(client.clientId, clientSecret))).status).toBe(200);
    expect((await token(basic(client.clientId, `${clientSecret}x`))).status).toBe(401);
  });

  it('keeps the weaker hash, and answers the proven caller, when the argon2 queue is too full to re-hash', async () => {
    const weak = new SecretHasher({ memoryCost: 8192, timeCost: 1, parallelism: 1 }, { concurrency: 1, queue: 8 });
    const { client, clientSecret } = await createClient({ ...h.service, hasher: weak }, { client_name: 'old-busy', audience: [API] });
    h.hasher.hash = () => Promise.reject(new Overloaded());
    try {
      expect((await token(basic(client.clientId, clientSecret))).status).toBe(200);
    } finally {
      delete (h.hasher as { hash?: unknown }).hash;
    }
    const stored = await h.db.selectFrom('client_secrets').select('hash').where('client_id', '=', client.clientId).executeTakeFirstOrThrow();
    expect(stored.hash).toMatch(/m=8192,p=1,t=1/);
  });
});
