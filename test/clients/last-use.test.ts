import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { LastUse, type LastUseWriter } from '../../src/clients/last-use.js';
import { createLogger } from '../../src/log.js';
import { basic, startHarness, type Harness } from '../support/harness.js';

const API = 'https://api.example.com';

describe('LastUse', () => {
  it('writes the uses recorded together in one batch, then names each client once', async () => {
    const writes: (readonly (readonly [string, number])[])[] = [];
    const written: string[] = [];
    const lastUse = new LastUse((uses) => (writes.push(uses), Promise.resolve()), (clientId) => written.push(clientId), createLogger('silent'));
    lastUse.record('a', 'a-1', 10);
    lastUse.record('a', 'a-2', 11);
    lastUse.record('b', 'b-1', 12);
    lastUse.record('a', 'a-1', 13);
    await lastUse.flush();
    expect(writes).toEqual([
      [
        ['a-1', 13],
        ['a-2', 11],
        ['b-1', 12],
      ],
    ]);
    expect(written).toEqual(['a', 'b']);
    await lastUse.flush();
    expect(writes).toHaveLength(1);
  });

  it('logs a batch it could not write and goes on', async () => {
    const lines: Record<string, unknown>[] = [];
    const log = createLogger('warn', { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
    let fail = true;
    const failing: LastUseWriter = () => (fail ? Promise.reject(new Error('disk full')) : Promise.resolve());
    const written: string[] = [];
    const lastUse = new LastUse(failing, (clientId) => written.push(clientId), log);
    lastUse.record('a', 'a-1', 10);
    await lastUse.flush();
    expect(lines.map((l) => l.msg)).toEqual(['last use of secrets not recorded']);
    fail = false;
    lastUse.record('b', 'b-1', 11);
    await lastUse.flush();
    expect(written).toEqual(['b']);
  });
});

describe("a secret's last use, at the token endpoint", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(() => h.close());

  it('is written after the answer, not on its path, and then shows', async () => {
    const { client, secret } = await h.createClient({ client_name: 'used', audience: [API] });
    const lastUsed = async () => (await h.db.selectFrom('client_secrets').select('last_used_at').where('client_id', '=', client.clientId).executeTakeFirstOrThrow()).last_used_at;
    // The use is recorded at the request's second, which must not pass before the check below.
    h.clock.freeze();
    const res = await h.request.post('/oauth/token').set('Authorization', basic(client.clientId, secret)).type('form').send({ grant_type: 'client_credentials' });
    expect(res.status).toBe(200);
    expect(await lastUsed()).toBeNull();
    await h.lastUse.flush();
    expect(Number(await lastUsed())).toBe(Math.floor(h.clock.now() / 1000));
    h.clock.sync();
  });
});
