import type { KyselyPlugin } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { ClientRecords } from '../../src/clients/client-records.js';
import { clientsVersion } from '../../src/clients/client.repository.js';
import { writeLastUse } from '../../src/clients/last-use.js';
import { deleteClient, revokeSecret, setClientEnabled, updateClientSettings } from '../../src/clients/client.service.js';
import { secretIdOf } from '../../src/clients/secret.js';
import { openDatabase } from '../../src/db/database.js';
import { basic, startHarness, TestClock, type Harness } from '../support/harness.js';

const API = 'https://api.example.com';

describe('client record cache', () => {
  let h: Harness;
  let clock: TestClock;
  let records: ClientRecords;

  beforeAll(async () => {
    h = await startHarness();
    clock = new TestClock();
    records = new ClientRecords(h.db, { ttlMs: 1000, maxEntries: 2, clock });
  });
  afterAll(() => h.close());

  /** A change made behind the cache's back, as the CLI or another instance would. */
  const renameInDatabase = (clientId: string, name: string) =>
    h.db.updateTable('clients').set({ client_name: name }).where('client_id', '=', clientId).execute();

  it('serves a record from memory within the TTL and reads it again after', async () => {
    const { client } = await h.createClient({ client_name: 'before', audience: [API] });
    expect((await records.client(client.clientId))?.clientName).toBe('before');
    await renameInDatabase(client.clientId, 'after');
    expect((await records.client(client.clientId))?.clientName).toBe('before');
    clock.advance(1);
    expect((await records.client(client.clientId))?.clientName).toBe('after');
  });

  it('reads the change counter at once when the clock steps back, not once it has caught up', async () => {
    const { client } = await h.createClient({ client_name: 'before', audience: [API] });
    expect((await records.client(client.clientId))?.clientName).toBe('before');
    await renameInDatabase(client.clientId, 'after');
    clock.advance(-600);
    try {
      expect((await records.client(client.clientId))?.clientName).toBe('after');
    } finally {
      clock.advance(600);
    }
  });

  it('keeps records past the TTL while nothing changes, reading only the change counter', async () => {
    const made = await Promise.all(['p', 'q'].map((name) => h.createClient({ client_name: name, audience: [API] })));
    const ids = made.map((m) => m.client.clientId);
    const queries: string[] = [];
    const counting: KyselyPlugin = { transformQuery: (args) => (queries.push(args.node.kind), args.node), transformResult: (args) => Promise.resolve(args.result) };
    const watched = new ClientRecords(h.db.withPlugin(counting), { ttlMs: 1000, maxEntries: 10, clock });
    const first = await Promise.all(ids.map((id) => watched.client(id)));
    clock.advance(1);
    queries.length = 0;
    const again = await Promise.all(ids.map((id) => watched.client(id)));
    expect(again[0]).toBe(first[0]);
    expect(again[1]).toBe(first[1]);
    // The two requests share one read of the counter.
    expect(queries).toEqual(['SelectQueryNode']);
  });

  it("forgets every record after the TTL once any client's secret changed, whoever changed it", async () => {
    const { client } = await h.createClient({ client_name: 'kept', audience: [API] });
    const { client: neighbour, secret } = await h.createClient({ client_name: 'neighbour', audience: [API] });
    const before = await records.client(client.clientId);
    await h.db.updateTable('client_secrets').set({ expires_at: 1 }).where('id', '=', secretIdOf(secret)!).execute();
    expect(await records.client(client.clientId)).toBe(before);
    clock.advance(1);
    const after = await records.client(client.clientId);
    expect(after).not.toBe(before);
    expect(after?.clientId).toBe(client.clientId);
    expect(Number((await records.secret(neighbour.clientId, secretIdOf(secret)!))?.expires_at)).toBe(1);
  });

  it('reads the database again at once after an invalidation', async () => {
    const { client } = await h.createClient({ client_name: 'one', audience: [API] });
    await records.client(client.clientId);
    await renameInDatabase(client.clientId, 'two');
    records.invalidate(client.clientId);
    expect((await records.client(client.clientId))?.clientName).toBe('two');
  });

  it('does not cache a read that an invalidation overtook', async () => {
    const { client } = await h.createClient({ client_name: 'old', audience: [API] });
    // Holds every query's result until released: the read has its row, but has not stored it yet.
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let reached!: () => void;
    const isHeld = new Promise<void>((resolve) => (reached = resolve));
    let holding = false;
    const hold = async () => {
      reached();
      await gate;
    };
    const held: KyselyPlugin = { transformQuery: (args) => args.node, transformResult: async (args) => (holding && (await hold()), args.result) };
    const slow = new ClientRecords(h.db.withPlugin(held), { ttlMs: 1000, maxEntries: 10, clock });
    // The change counter is read first, so the read held is the client's.
    await slow.client('nobody');
    holding = true;

    const inFlight = slow.client(client.clientId);
    await isHeld;
    // The held read keeps this handle's connection, so the change comes through a second one.
    const other = openDatabase(h.config.databaseUrl);
    await other.updateTable('clients').set({ client_name: 'new' }).where('client_id', '=', client.clientId).execute();
    await other.destroy();
    slow.invalidate(client.clientId);
    release();
    expect((await inFlight)?.clientName).toBe('old');
    expect((await slow.client(client.clientId))?.clientName).toBe('new');
  });

  it('never caches an unknown client or an unknown secret id', async () => {
    expect(await records.client('not-yet')).toBeUndefined();
    const { client, secret } = await h.createClient({ client_id: 'not-yet', client_name: 'late', audience: [API] });
    expect((await records.client('not-yet'))?.clientId).toBe(client.clientId);

    const secretId = secretIdOf(secret)!;
    const other = `${secretId.slice(0, -1)}${secretId.endsWith('0') ? '1' : '0'}`;
    expect(await records.secret(client.clientId, other)).toBeUndefined();
    expect((await records.secret(client.clientId, secretId))?.id).toBe(secretId);
  });

  it('keeps at most maxEntries clients, dropping the least recently used', async () => {
    const made = await Promise.all(['a', 'b', 'c'].map((name) => h.createClient({ client_name: name, audience: [API] })));
    const [a, b, c] = made.map((m) => m.client.clientId) as [string, string, string];
    await records.client(a);
    await records.client(b);
    await records.client(a);
    await records.client(c);
    expect(records.size).toBe(2);
    await renameInDatabase(a, 'a2');
    await renameInDatabase(b, 'b2');
    expect((await records.client(a))?.clientName).toBe('a');
    expect((await records.client(b))?.clientName).toBe('b2');
  });
});

describe('the change counter', () => {
  let h: Harness;

  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(() => h.close());

  /** Runs a change and tells whether the counter moved. */
  const moves = async (change: () => Promise<unknown>) => {
    const before = await clientsVersion(h.db);
    await change();
    return (await clientsVersion(h.db)) !== before;
  };

  it('moves with every change to a client or a secret, by any writer', async () => {
    let made: Awaited<ReturnType<Harness['createClient']>> | undefined;
    expect(await moves(async () => (made = await h.createClient({ client_name: 'v', audience: [API] })))).toBe(true);
    const { client, secret } = made!;
    const secretId = secretIdOf(secret)!;
    const id = client.clientId;
    expect(await moves(() => h.db.updateTable('clients').set({ client_name: 'w' }).where('client_id', '=', id).execute())).toBe(true);
    expect(await moves(() => h.db.updateTable('client_secrets').set({ hash: 'x' }).where('id', '=', secretId).execute())).toBe(true);
    expect(await moves(() => h.db.updateTable('client_secrets').set({ expires_at: 1 }).where('id', '=', secretId).execute())).toBe(true);
    expect(await moves(() => h.db.insertInto('client_secrets').values({ id: 'extra', client_id: id, hash: 'y', created_at: 1, expires_at: null, last_used_at: null }).execute())).toBe(true);
    expect(await moves(() => h.db.deleteFrom('client_secrets').where('id', '=', 'extra').execute())).toBe(true);
    expect(await moves(() => h.db.deleteFrom('clients').where('client_id', '=', id).execute())).toBe(true);
  });

  it("does not move when a secret's last use is recorded", async () => {
    const { secret } = await h.createClient({ client_name: 'used', audience: [API] });
    expect(await moves(() => writeLastUse(h.db)([[secretIdOf(secret)!, 1_800_000_000]]))).toBe(false);
  });
});

describe('a change through the client service applies to the token endpoint at once', () => {
  let h: Harness;

  beforeAll(async () => {
    h = await startHarness({ CLIENT_CACHE_TTL: '60' });
  });
  afterAll(() => h.close());

  const tokenFor = (id: string, secret: string, form: Record<string, string> = {}) =>
    h.request.post('/oauth/token').set('Authorization', basic(id, secret)).type('form').send({ grant_type: 'client_credentials', ...form });

  it.each([
    ['disabled', (id: string) => setClientEnabled(h.service, id, false)],
    ['deleted', (id: string) => deleteClient(h.service, id)],
    ['its secret rotated with no grace period', (id: string) => h.rotateSecret(id, 0)],
  ])('refuses a cached client once it is %s', async (_label, change) => {
    const { client, secret } = await h.createClient({ client_name: 'cached', audience: [API] });
    expect((await tokenFor(client.clientId, secret)).status).toBe(200);
    await change(client.clientId);
    expect((await tokenFor(client.clientId, secret)).status).toBe(401);
  });

  it('refuses a cached secret once it is revoked', async () => {
    const { client, secret } = await h.createClient({ client_name: 'cached', audience: [API] });
    expect((await tokenFor(client.clientId, secret)).status).toBe(200);
    expect(await revokeSecret(h.service, client.clientId, secretIdOf(secret)!)).toBe(true);
    expect((await tokenFor(client.clientId, secret)).status).toBe(401);
  });

  it('applies narrowed scopes to the next request', async () => {
    const { client, secret } = await h.createClient({ client_name: 'cached', audience: [API], scope: 'read write' });
    expect((await tokenFor(client.clientId, secret, { scope: 'write' })).status).toBe(200);
    await updateClientSettings(h.service, client.clientId, { scope: 'read', default_scope: 'read' });
    const res = await tokenFor(client.clientId, secret, { scope: 'write' });
    expect(res.status).toBe(400);
    expect(res.body.error).toBe('invalid_scope');
  });

  it('sees a change made by another process only after CLIENT_CACHE_TTL', async () => {
    const { client, secret } = await h.createClient({ client_name: 'elsewhere', audience: [API] });
    // The first use records last_used_at; once written, the record is read again, and the second
    // use is served from it.
    expect((await tokenFor(client.clientId, secret)).status).toBe(200);
    await h.lastUse.flush();
    expect((await tokenFor(client.clientId, secret)).status).toBe(200);
    await h.db.updateTable('clients').set({ enabled: 0 }).where('client_id', '=', client.clientId).execute();
    expect((await tokenFor(client.clientId, secret)).status).toBe(200);
    h.clock.advance(60);
    expect((await tokenFor(client.clientId, secret)).status).toBe(401);
  });
});
