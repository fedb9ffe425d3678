import { request } from 'node:http';
import type { AddressInfo } from 'node:net';

import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { adminClientSettings } from '../../src/admin/bootstrap.js';
import { parseDateTime } from '../../src/admin/audit-events.js';
import { adminRoutes } from '../../src/admin/index.js';
import { openApiDocument } from '../../src/admin/openapi.js';
import type { SecretHasher } from '../../src/clients/secret.js';
import { createClient, deleteClient, revokeClientTokens, revokeSecret, rotateSecret, setClientEnabled, updateClientSettings } from '../../src/clients/client.service.js';
import { ISSUER, basic, startHarness, type Harness } from '../support/harness.js';
import { expectConforms } from '../support/openapi.js';

const API = 'https://api.example.com';

let h: Harness;
let writer: string;
let reader: string;
let adminId: string;

async function adminToken(scope: string): Promise<{ token: string; clientId: string }> {
  const { client, secret } = await h.createClient({ client_name: `admin ${scope}`, ...adminClientSettings(ISSUER), scope });
  const res = await h.request.post('/oauth/token').type('form').set('Authorization', basic(client.clientId, secret)).send('grant_type=client_credentials');
  expect(res.status).toBe(200);
  return { token: res.body.access_token as string, clientId: client.clientId };
}

beforeAll(async () => {
  h = await startHarness();
  ({ token: writer, clientId: adminId } = await adminToken('admin:read admin:write'));
  ({ token: reader } = await adminToken('admin:read'));
});
afterAll(() => h.close());

/** Calls the admin API and checks the answer against the OpenAPI document for `template`. */
async function call(method: 'GET' | 'POST' | 'PATCH' | 'DELETE', path: string, template: string, body?: unknown, headers: Record<string, string> = {}) {
  const req = h.request[method.toLowerCase() as 'get' | 'post' | 'patch' | 'delete'](path).set('Authorization', `Bearer ${writer}`);
  for (const [k, v] of Object.entries(headers)) void req.set(k, v);
  const res = body === undefined ? await req : await req.send(body as object);
  expectConforms(method, template, res.status, res.status === 204 ? undefined : res.body);
  expect(res.headers['cache-control']).toBe('no-store');
  return res;
}

const tokenFor = (clientId: string, secret: string) =>
  h.request.post('/oauth/token').type('form').set('Authorization', basic(clientId, secret)).send('grant_type=client_credentials');

describe('authorization (RFC 6750)', () => {
  const get = (auth?: string) => {
    const req = h.request.get('/admin/clients');
    return auth ? req.set('Authorization', auth) : req;
  };

  it('asks for a bearer token without an error code when none is sent', async () => {
    const res = await get();
    expect(res.status).toBe(401);
    expect(res.headers['www-authenticate']).toBe(`Bearer realm="${ISSUER}"`);
    expect(res.body.error).toBe('invalid_token');
  });

  it.each([
    ['a garbage token', () => 'Bearer garbage'],
    ['a Basic header', () => basic('a', 'b')],
    ['a token for another audience', async () => {
      const { client, secret } = await h.createClient({ client_name: 'api user', audience: [API], scope: 'admin:read admin:write' });
      return `Bearer ${(await tokenFor(client.clientId, secret)).body.access_token as string}`;
    }],
  ])('refuses %s with 401 invalid_token', async (_label, auth) => {
    const res = await get(await auth());
    expect(res.status).toBe(401);
    expect(res.body.error).toBe('invalid_token');
    expect(res.headers['www-authenticate']).toMatch(/^Bearer realm="[^"]+", error="invalid_token"/);
  });

  it('audits denied requests: a row for the first per client (else address) and reason in each period, the rest counted', async () => {
    await h.limits.refusals.flush();
    const since = (await h.auditRows()).length;
    expect((await get()).status).toBe(401);
    expect((await get()).status).toBe(401);
    expect((await get('Bearer garbage')).status).toBe(401);
    const readers = [await adminToken('admin:read'), await adminToken('admin:read')];
    for (const { token } of readers) expect((await h.request.post('/admin/clients').set('Authorization', `Bearer ${token}`).send({ client_name: 'x' })).status).toBe(403);
    const { client, secret } = await h.createClient({ client_name: 'prober', audience: [API] });
    expect((await get(`Bearer ${(await tokenFor(client.clientId, secret)).body.access_token as string}`)).status).toBe(401);
    const denied = (await h.auditRows()).slice(since).filter((r) => r.type === 'admin.denied');
    expect(denied).toMatchObject([
      { outcome: 'failure', error: 'invalid_token', reason: 'token_missing', client_id: null, remote_addr: expect.any(String), request_id: expect.any(String) },
      { error: 'invalid_token', reason: expect.any(String), client_id: null },
      // Each admin client's denial is its own row, though they share an address.
      { error: 'insufficient_scope', reason: 'insufficient_scope', client_id: readers[0]!.clientId, details: expect.stringContaining('"method":"POST"') },
      { error: 'insufficient_scope', reason: 'insufficient_scope', client_id: readers[1]!.clientId },
      { error: 'invalid_token', reason: 'wrong_audience', client_id: client.clientId },
    ]);
    expect(denied[1]!.reason).not.toBe('token_missing');
    await h.limits.refusals.flush();
    const [summary] = (await h.auditRows()).slice(since).filter((r) => r.type === 'limit.refused' && r.reason === 'admin.denied:token_missing');
    expect(JSON.parse(summary!.details!)).toMatchObject({ refused: 1 });
  });

  it('answers a denial whose audit row cannot be written with a plain 500, no challenge', async () => {
    await h.limits.refusals.flush();
    await sql`alter table audit_events rename to audit_events_gone`.execute(h.db);
    try {
      const res = await get();
      expect(res.status).toBe(500);
      expect(res.body.error).toBe('server_error');
      expect(res.headers['www-authenticate']).toBeUndefined();
    } finally {
      await sql`alter table audit_events_gone rename to audit_events`.execute(h.db);
    }
  });

  it('refuses a write with admin:read only: 403 insufficient_scope naming the scope', async () => {
    expect((await get(`Bearer ${reader}`)).status).toBe(200);
    const res = await h.request.post('/admin/clients').set('Authorization', `Bearer ${reader}`).send({ client_name: 'x' });
    expect(res.status).toBe(403);
    expect(res.body.error).toBe('insufficient_scope');
    expect(res.headers['www-authenticate']).toMatch(/error="insufficient_scope".*scope="admin:write"/);
  });

  it('takes admin rights away at once from a demoted admin, even with a token issued before', async () => {
    const { client, secret } = await h.createClient({ client_name: 'soon demoted', ...adminClientSettings(ISSUER) });
    const token = `Bearer ${(await tokenFor(client.clientId, secret)).body.access_token as string}`;
    expect((await get(token)).status).toBe(200);

    const etag = (await call('GET', `/admin/clients/${client.clientId}`, '/admin/clients/{client_id}')).headers.etag!;
    const readOnly = await call('PATCH', `/admin/clients/${client.clientId}`, '/admin/clients/{client_id}', { scope: 'admin:read', default_scope: 'admin:read' }, { 'If-Match': etag });
    expect(readOnly.status).toBe(200);
    expect((await get(token)).status).toBe(200);
    const write = await h.request.post('/admin/clients').set('Authorization', token).send({ client_name: 'escalation' });
    expect(write.status).toBe(403);

    await call('PATCH', `/admin/clients/${client.clientId}`, '/admin/clients/{client_id}', { audience: [API], default_audience: API, scope: '', default_scope: '' }, { 'If-Match': readOnly.headers.etag! });
    expect((await get(token)).status).toBe(401);
  });

  it('refuses an expired token, and the token of a disabled admin client', async () => {
    const { token, clientId } = await adminToken('admin:read');
    h.clock.advance(3600 + h.config.clockLeeway + 1);
    expect((await get(`Bearer ${token}`)).status).toBe(401);
    h.clock.sync();
    expect((await get(`Bearer ${token}`)).status).toBe(200);
    await setClientEnabled(h.service, clientId, false);
    expect((await get(`Bearer ${token}`)).status).toBe(401);
  });
});

describe('client lifecycle through the API', () => {
  it('still updates a client whose lifetime exceeds an ACCESS_TOKEN_MAX_TTL lowered since, judging the lifetime only when the patch changes it', async () => {
    const { client } = await h.createClient({ client_name: 'long-lived', audience: [API], access_token_ttl: 86_400 });
    const lowered = { ...h.service, limits: { maxAccessTokenTtl: 3600 } };
    await expect(updateClientSettings(lowered, client.clientId, { enabled: false })).resolves.toMatchObject({ changed: ['enabled'] });
    await expect(updateClientSettings(lowered, client.clientId, { enabled: true, access_token_ttl: 86_400 })).resolves.toMatchObject({ changed: ['enabled'] });
    await expect(updateClientSettings(lowered, client.clientId, { access_token_ttl: 7200 })).rejects.toMatchObject({ field: 'access_token_ttl' });
    await expect(updateClientSettings(lowered, client.clientId, { access_token_ttl: 3600 })).resolves.toMatchObject({ changed: ['access_token_ttl'] });
  });

  it.each([-1, 1.5, 31_536_001, '60'])('refuses a secret overlap of %j, naming the field, and keeps the current secret', async (value) => {
    const created = await call('POST', '/admin/clients', '/admin/clients', { client_name: 'overlap', audience: [API] });
    const { client_id: id, client_secret: secret } = created.body as { client_id: string; client_secret: string };
    const res = await call('POST', `/admin/clients/${id}/secrets`, '/admin/clients/{client_id}/secrets', { previous_secret_expires_in: value });
    expect(res.status).toBe(400);
    expect(res.body).toMatchObject({ error: 'invalid_request', field: 'previous_secret_expires_in' });
    expect((await tokenFor(id, secret)).status).toBe(200);
  });

  it('create → token → rotate → both secrets work → old expires → delete → refused and inactive', async () => {
    const created = await call('POST', '/admin/clients', '/admin/clients', { client_name: 'billing', scope: 'read:data', audience: [API], introspection_audiences: [] });
    expect(created.status).toBe(201);
    expect(created.headers.location).toBe(`/admin/clients/${created.body.client_id as string}`);
    const { client_id: id, client_secret: first } = created.body as { client_id: string; client_secret: string };
    expect(first).toMatch(/^tsec_/);

    const issued = await tokenFor(id, first);
    expect(issued.status).toBe(200);

    const rotated = await call('POST', `/admin/clients/${id}/secrets`, '/admin/clients/{client_id}/secrets', { previous_secret_expires_in: 600 });
    expect(rotated.status).toBe(201);
    const second = rotated.body.client_secret as string;
    expect((await tokenFor(id, first)).status).toBe(200);
    expect((await tokenFor(id, second)).status).toBe(200);

    await h.lastUse.flush();
    const secrets = await call('GET', `/admin/clients/${id}/secrets`, '/admin/clients/{client_id}/secrets');
    expect(secrets.body.items).toHaveLength(2);
    expect(secrets.body.items.every((s: { last_used_at: string | null }) => s.last_used_at !== null)).toBe(true);

    h.clock.advance(600);
    expect((await tokenFor(id, first)).status).toBe(401);
    expect((await tokenFor(id, second)).status).toBe(200);
    h.clock.sync();

    expect((await call('DELETE', `/admin/clients/${id}`, '/admin/clients/{client_id}')).status).toBe(204);
    expect((await tokenFor(id, second)).status).toBe(401);
    const { client, secret } = await h.createClient({ client_name: 'rs', grant_types: [], introspection_audiences: ['*'] });
    const introspected = await h.request.post('/oauth/introspect').type('form').set('Authorization', basic(client.clientId, secret)).send(`token=${issued.body.access_token as string}`);
    expect(introspected.body).toEqual({ active: false });
    expect((await call('GET', `/admin/clients/${id}`, '/admin/clients/{client_id}')).status).toBe(404);
  });

  it('revokes one secret at once, and every token of a client', async () => {
    const { body } = await call('POST', '/admin/clients', '/admin/clients', { client_name: 'revocable', audience: [API] });
    const id = body.client_id as string;
    const [secret] = (await call('GET', `/admin/clients/${id}/secrets`, '/admin/clients/{client_id}/secrets')).body.items as { id: string }[];
    const token = (await tokenFor(id, body.client_secret as string)).body.access_token as string;

    const revoked = await call('POST', `/admin/clients/${id}/revoke-tokens`, '/admin/clients/{client_id}/revoke-tokens');
    expect(revoked.body).toEqual({ client_id: id, tokens_revoked_before: expect.any(String) });
    const rs = await h.createClient({ client_name: 'rs2', grant_types: [], introspection_audiences: [API] });
    const active = async (t: string) =>
      (await h.request.post('/oauth/introspect').type('form').set('Authorization', basic(rs.client.clientId, rs.secret)).send(`token=${t}`)).body.active as boolean;
    expect(await active(token)).toBe(false);

    expect((await call('DELETE', `/admin/clients/${id}/secrets/${secret!.id}`, '/admin/clients/{client_id}/secrets/{secret_id}')).status).toBe(204);
    expect((await tokenFor(id, body.client_secret as string)).status).toBe(401);
    expect((await call('DELETE', `/admin/clients/${id}/secrets/nope`, '/admin/clients/{client_id}/secrets/{secret_id}')).status).toBe(404);
  });

  it('revokes one token by jti', async () => {
    const { body } = await call('POST', '/admin/clients', '/admin/clients', { client_name: 'by-jti', audience: [API] });
    const token = (await tokenFor(body.client_id as string, body.client_secret as string)).body.access_token as string;
    const { jti } = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as { jti: string };
    expect((await call('DELETE', `/admin/tokens/${jti}`, '/admin/tokens/{jti}')).status).toBe(204);
    const rows = await h.db.selectFrom('revoked_tokens').selectAll().where('jti', '=', jti).execute();
    expect(rows).toHaveLength(1);
    expect((await call('DELETE', '/admin/tokens/unknown-jti', '/admin/tokens/{jti}')).status).toBe(404);
  });
});

describe('validation', () => {
  // No stored id holds a NUL, and PostgreSQL refuses one in a query: these must not reach the database.
  it('answers a NUL in an id with 404, and in a query value or cursor with 400', async () => {
    for (const path of ['/admin/clients/%00', '/admin/clients/a%00b/secrets', '/admin/audit-events/%00']) {
      const res = await h.request.get(path).set('Authorization', `Bearer ${writer}`);
      expect(res.status, path).toBe(404);
    }
    expect((await h.request.delete('/admin/tokens/%00').set('Authorization', `Bearer ${writer}`)).status).toBe(404);
    const nulCursor = Buffer.from('a\u0000', 'utf8').toString('base64url');
    for (const [path, field] of [
      ['/admin/audit-events?client_id=%00', 'client_id'],
      ['/admin/audit-events?type=a%00', 'type'],
      [`/admin/clients?cursor=${nulCursor}`, 'cursor'],
    ]) {
      const res = await h.request.get(path!).set('Authorization', `Bearer ${writer}`);
      expect(res.status, path).toBe(400);
      expect(res.body, path).toMatchObject({ error: 'invalid_request', field });
    }
  });

  const invalid: [string, unknown, string][] = [
    ['an unknown field', { client_name: 'x', colour: 'blue' }, 'colour'],
    ['a read-only field', { client_name: 'x', created_at: '2026-01-01T00:00:00Z' }, 'created_at'],
    ['a missing name', { scope: 'a' }, 'client_name'],
    ['a name of the wrong type', { client_name: 42 }, 'client_name'],
    ['a bad client_id', { client_name: 'x', client_id: 'a b' }, 'client_id'],
    ['a bad scope token', { client_name: 'x', scope: 'a "b' }, 'scope'],
    ['a default scope outside scope', { client_name: 'x', scope: 'a', default_scope: 'b' }, 'default_scope'],
    ['a non-array audience', { client_name: 'x', audience: API }, 'audience'],
    ['a relative audience', { client_name: 'x', audience: ['api'] }, 'audience'],
    ['a default audience not allowed', { client_name: 'x', audience: [API], default_audience: 'https://b.example' }, 'default_audience'],
    ['bad introspection audiences', { client_name: 'x', introspection_audiences: ['*', API] }, 'introspection_audiences'],
    ['an unsupported grant type', { client_name: 'x', grant_types: ['password'] }, 'grant_types'],
    ['an unknown auth method', { client_name: 'x', token_endpoint_auth_method: 'private_key_jwt' }, 'token_endpoint_auth_method'],
    ['a lifetime too long', { client_name: 'x', access_token_ttl: 10_000_000 }, 'access_token_ttl'],
    ['a fractional lifetime', { client_name: 'x', access_token_ttl: 1.5 }, 'access_token_ttl'],
    ['a non-boolean enabled', { client_name: 'x', enabled: 'yes' }, 'enabled'],
    ['an array body', [], 'body'],
    ['a prototype property name', { client_name: 'x', constructor: 'x' }, 'constructor'],
    ['__proto__', JSON.parse('{"client_name":"x","__proto__":{"enabled":false}}') as unknown, '__proto__'],
  ];
  it.each(invalid)('rejects %s with 400 naming the field', async (_label, body, field) => {
    const res = await call('POST', '/admin/clients', '/admin/clients', body);
    expect(res.status).toBe(400);
    expect(res.body).toMatchObject({ error: 'invalid_request', field });
  });

  it('rejects invalid JSON (400) and other media types (415)', async () => {
    const bad = await h.request.post('/admin/clients').set('Authorization', `Bearer ${writer}`).set('Content-Type', 'application/json').send('{"client_name":');
    expect(bad.status).toBe(400);
    expect(bad.body.field).toBe('body');
    const form = await h.request.post('/admin/clients').set('Authorization', `Bearer ${writer}`).type('form').send('client_name=x');
    expect(form.status).toBe(415);
    expectConforms('POST', '/admin/clients', 415, form.body);
  });

  it('answers a duplicate client_id with 409 and unknown ids with 404', async () => {
    await call('POST', '/admin/clients', '/admin/clients', { client_name: 'a', client_id: 'dup-client' });
    const dup = await call('POST', '/admin/clients', '/admin/clients', { client_name: 'b', client_id: 'dup-client' });
    expect(dup.status).toBe(409);
    expect(dup.body.field).toBe('client_id');
    for (const [method, path, template] of [
      ['GET', '/admin/clients/ghost', '/admin/clients/{client_id}'],
      ['DELETE', '/admin/clients/ghost', '/admin/clients/{client_id}'],
      ['GET', '/admin/clients/ghost/secrets', '/admin/clients/{client_id}/secrets'],
      ['POST', '/admin/clients/ghost/revoke-tokens', '/admin/clients/{client_id}/revoke-tokens'],
      ['GET', '/admin/audit-events/ghost', '/admin/audit-events/{id}'],
    ] as const) {
      expect((await call(method, path, template)).status).toBe(404);
    }
  });
});

describe('updates with ETag / If-Match', () => {
  it('updates any subset, refuses a stale ETag (412) and a missing one (428)', async () => {
    const created = await call('POST', '/admin/clients', '/admin/clients', { client_name: 'editable', scope: 'a b', audience: [API] });
    const id = created.body.client_id as string;
    const read = await call('GET', `/admin/clients/${id}`, '/admin/clients/{client_id}');
    const etag = read.headers.etag!;
    expect(etag).toBe(created.headers.etag);

    const missing = await call('PATCH', `/admin/clients/${id}`, '/admin/clients/{client_id}', { description: 'x' });
    expect(missing.status).toBe(428);

    const updated = await call('PATCH', `/admin/clients/${id}`, '/admin/clients/{client_id}', { description: 'nightly', access_token_ttl: 600 }, { 'If-Match': etag });
    expect(updated.status).toBe(200);
    expect(updated.body).toMatchObject({ description: 'nightly', access_token_ttl: 600, scope: 'a b', client_name: 'editable' });
    expect(updated.headers.etag).not.toBe(etag);

    const stale = await call('PATCH', `/admin/clients/${id}`, '/admin/clients/{client_id}', { description: 'lost update' }, { 'If-Match': etag });
    expect(stale.status).toBe(412);
    expect((await call('GET', `/admin/clients/${id}`, '/admin/clients/{client_id}')).body.description).toBe('nightly');

    const readOnly = await call('PATCH', `/admin/clients/${id}`, '/admin/clients/{client_id}', { client_id: 'other' }, { 'If-Match': updated.headers.etag! });
    expect(readOnly.status).toBe(400);
    expect(readOnly.body.field).toBe('client_id');

    const inconsistent = await call('PATCH', `/admin/clients/${id}`, '/admin/clients/{client_id}', { scope: 'c' }, { 'If-Match': updated.headers.etag! });
    expect(inconsistent.status).toBe(400);
    expect(inconsistent.body.field).toBe('default_scope');
  });

  it('lets exactly one of two concurrent updates with the same ETag win', async () => {
    const created = await call('POST', '/admin/clients', '/admin/clients', { client_name: 'contended' });
    const id = created.body.client_id as string;
    const etag = created.headers.etag!;
    const results = await Promise.all(
      ['first', 'second', 'third'].map((description) => call('PATCH', `/admin/clients/${id}`, '/admin/clients/{client_id}', { description }, { 'If-Match': etag })),
    );
    expect(results.map((r) => r.status).sort()).toEqual([200, 412, 412]);
    const winner = results.find((r) => r.status === 200)!.body.description as string;
    expect((await call('GET', `/admin/clients/${id}`, '/admin/clients/{client_id}')).body.description).toBe(winner);
  });
});

describe('lists', () => {
  it('pages clients by cursor without losing or repeating any while others are inserted', async () => {
    const names = Array.from({ length: 7 }, (_, i) => `paged-${i}`);
    const ids = new Set<string>();
    for (const name of names) ids.add((await call('POST', '/admin/clients', '/admin/clients', { client_name: name })).body.client_id as string);

    const seen: string[] = [];
    let cursor: string | null = null;
    let insert = 0;
    do {
      const query: string = `?limit=3&name_prefix=paged-${cursor ? `&cursor=${cursor}` : ''}`;
      const res = await call('GET', `/admin/clients${query}`, '/admin/clients');
      seen.push(...(res.body.items as { client_id: string }[]).map((c) => c.client_id));
      cursor = res.body.next_cursor as string | null;
      await call('POST', '/admin/clients', '/admin/clients', { client_name: `paged-late-${insert++}` });
    } while (cursor);

    expect(new Set(seen).size).toBe(seen.length);
    for (const id of ids) expect(seen).toContain(id);
    expect([...seen].sort()).toEqual(seen);
  });

  it('filters by a name prefix outside the basic plane', async () => {
    await call('POST', '/admin/clients', '/admin/clients', { client_name: '😀alpha' });
    await call('POST', '/admin/clients', '/admin/clients', { client_name: '😀beta' });
    const res = await call('GET', `/admin/clients?name_prefix=${encodeURIComponent('😀')}`, '/admin/clients');
    expect(res.body.items.map((c: { client_name: string }) => c.client_name).sort()).toEqual(['😀alpha', '😀beta']);
  });

  it('filters clients by enabled', async () => {
    await call('POST', '/admin/clients', '/admin/clients', { client_name: 'filter-off', enabled: false });
    const res = await call('GET', '/admin/clients?enabled=false&limit=200', '/admin/clients');
    expect(res.body.items.length).toBeGreaterThan(0);
    expect(res.body.items.every((c: { enabled: boolean }) => !c.enabled)).toBe(true);
  });

  it.each([
    ['limit=0', 'limit'],
    ['limit=201', 'limit'],
    ['cursor=%%%', 'cursor'],
    ['enabled=maybe', 'enabled'],
    ['limit=1&limit=2', 'limit'],
  ])('rejects ?%s naming the parameter', async (query, field) => {
    const res = await call('GET', `/admin/clients?${query}`, '/admin/clients');
    expect(res.status).toBe(400);
    expect(res.body.field).toBe(field);
  });

  it('lists audit events newest first, filtered, paged, and one by id', async () => {
    const { body } = await call('POST', '/admin/clients', '/admin/clients', { client_name: 'audited', audience: [API] });
    const id = body.client_id as string;
    await tokenFor(id, body.client_secret as string);
    await tokenFor(id, 'wrong');

    const all = await call('GET', `/admin/audit-events?client_id=${id}`, '/admin/audit-events');
    expect(all.body.items.map((e: { type: string }) => e.type)).toEqual(['token.failed', 'token.issued', 'client.created']);
    expect(all.body.items[2].details).toEqual({ actor: adminId, fields: ['client_name', 'audience'] });

    const failures = await call('GET', `/admin/audit-events?client_id=${id}&outcome=failure`, '/admin/audit-events');
    expect(failures.body.items).toHaveLength(1);
    const issued = await call('GET', `/admin/audit-events?client_id=${id}&type=token.issued`, '/admin/audit-events');
    expect(issued.body.items).toHaveLength(1);

    const first = await call('GET', `/admin/audit-events?client_id=${id}&limit=2`, '/admin/audit-events');
    const second = await call('GET', `/admin/audit-events?client_id=${id}&limit=2&cursor=${first.body.next_cursor as string}`, '/admin/audit-events');
    expect([...first.body.items, ...second.body.items].map((e: { id: string }) => e.id)).toEqual(all.body.items.map((e: { id: string }) => e.id));
    expect(second.body.next_cursor).toBeNull();

    const future = await call('GET', `/admin/audit-events?client_id=${id}&since=2999-01-01T00:00:00Z`, '/admin/audit-events');
    expect(future.body.items).toEqual([]);
    const past = await call('GET', `/admin/audit-events?client_id=${id}&until=2000-01-01T00:00:00Z`, '/admin/audit-events');
    expect(past.body.items).toEqual([]);
    const bad = await call('GET', '/admin/audit-events?since=yesterday', '/admin/audit-events');
    expect(bad.body.field).toBe('since');

    const one = await call('GET', `/admin/audit-events/${all.body.items[1].id as string}`, '/admin/audit-events/{id}');
    expect(one.body).toEqual(all.body.items[1]);
  });

  it.each([
    ['since', '2026-02-30T00:00:00Z'],
    ['since', '2026-04-31T00:00:00Z'],
    ['since', '2026-02-29T00:00:00Z'],
    ['until', '2100-02-29T00:00:00Z'],
    ['since', '2026-13-01T00:00:00Z'],
    ['since', '2026-00-10T00:00:00Z'],
    ['until', '2026-01-00T00:00:00Z'],
    ['since', '2026-01-01T24:00:00Z'],
    ['until', '2026-01-01T23:60:00Z'],
    ['since', '2026-01-01T12:00:60Z'],
    ['since', '2026-12-31T23:59:61Z'],
    ['since', '2026-01-01T00:00:00+24:00'],
    ['until', '2026-01-01T00:00:00-01:60'],
    ['since', '2026-01-01T00:00:00'],
    ['since', '2026-01-01T00:00:00+0100'],
    ['since', '2026-01-01 00:00:00Z'],
    ['since', '2026-1-01T00:00:00Z'],
  ])('rejects the impossible or malformed date-time %s=%s instead of rolling it over', async (field, value) => {
    const res = await call('GET', `/admin/audit-events?${field}=${encodeURIComponent(value)}`, '/admin/audit-events');
    expect(res.status).toBe(400);
    expect(res.body).toEqual({ error: 'invalid_request', error_description: `${field} must be an RFC 3339 date-time, e.g. 2026-11-23T20:00:00Z`, field });
  });

  it('reads valid date-times exactly: leap days, offsets, fractions, lower case, leap seconds', async () => {
    const { body } = await call('POST', '/admin/clients', '/admin/clients', { client_name: 'timed', audience: [API] });
    const id = body.client_id as string;
    const [event] = (await call('GET', `/admin/audit-events?client_id=${id}`, '/admin/audit-events')).body.items as { id: string; occurred_at: string }[];
    const at = Date.parse(event!.occurred_at);
    /** `ms` written in the zone `offset` (minutes east of UTC), as RFC 3339 does. */
    const inZone = (ms: number, offset: number) => {
      const zone = offset === 0 ? 'Z' : `${offset < 0 ? '-' : '+'}${String(Math.trunc(Math.abs(offset) / 60)).padStart(2, '0')}:${String(Math.abs(offset) % 60).padStart(2, '0')}`;
      return new Date(ms + offset * 60_000).toISOString().replace('Z', zone);
    };
    const found = async (query: string) =>
      ((await call('GET', `/admin/audit-events?client_id=${id}&${query}`, '/admin/audit-events')).body.items as { id: string }[]).map((e) => e.id);

    for (const offset of [0, 330, -480, 14 * 60, -(23 * 60 + 59)]) {
      // since is inclusive, until exclusive: the event's own millisecond is the boundary.
      expect(await found(`since=${encodeURIComponent(inZone(at, offset))}`), `offset ${offset}`).toEqual([event!.id]);
      expect(await found(`since=${encodeURIComponent(inZone(at + 1, offset))}`), `offset ${offset}`).toEqual([]);
      expect(await found(`until=${encodeURIComponent(inZone(at, offset))}`), `offset ${offset}`).toEqual([]);
      expect(await found(`until=${encodeURIComponent(inZone(at + 1, offset))}`), `offset ${offset}`).toEqual([event!.id]);
    }
    // Lower-case "t" and "z", and fraction digits beyond milliseconds.
    expect(await found(`since=${inZone(at, 0).toLowerCase()}`)).toEqual([event!.id]);
    expect(await found(`since=${inZone(at, 0).replace('Z', '999999Z')}`)).toEqual([event!.id]);

    expect(parseDateTime('2028-02-29T00:00:00Z')).toBe(Date.UTC(2028, 1, 29));
    expect(parseDateTime('2000-02-29T12:30:00+02:00')).toBe(Date.UTC(2000, 1, 29, 10, 30));
    expect(parseDateTime('2026-03-01T00:00:00-00:00')).toBe(Date.UTC(2026, 2, 1));
    expect(parseDateTime('2026-01-01T00:30:00+01:00')).toBe(Date.UTC(2025, 11, 31, 23, 30));
    expect(parseDateTime('0050-06-15T00:00:00Z')).toBe(new Date('0050-06-15T00:00:00Z').getTime());
    // A leap second: only at 23:59 UTC, and counted as the start of the next second.
    expect(parseDateTime('2016-12-31T23:59:60Z')).toBe(Date.UTC(2017, 0, 1));
    expect(parseDateTime('2017-01-01T00:59:60.5+01:00')).toBe(Date.UTC(2017, 0, 1, 0, 0, 0, 500));
    expect(parseDateTime('2016-12-31T18:59:60-05:00')).toBe(Date.UTC(2017, 0, 1));
    expect(parseDateTime('2016-12-31T23:59:60+01:00')).toBeUndefined();
    const ok = await call('GET', '/admin/audit-events?since=2028-02-29T00:00:00Z&until=2016-12-31T23:59:60Z', '/admin/audit-events');
    expect(ok.status).toBe(200);
  });

  it('lists the signing keys without key material', async () => {
    const res = await call('GET', '/admin/keys', '/admin/keys');
    expect(res.body.items).toEqual([
      { kid: h.keystore.active.kid, state: 'active', created_at: expect.any(String), activate_after: null, activated_at: expect.any(String), retired_at: null, revoked_at: null },
    ]);
  });
});

describe('audit of admin writes, and secrets', () => {
  it('makes no change whose audit row cannot be written', async () => {
    const { client, secret } = await h.createClient({ client_name: 'unaudited', audience: [API] });
    const id = client.clientId;
    const { id: secretId } = await h.db.selectFrom('client_secrets').select('id').where('client_id', '=', id).executeTakeFirstOrThrow();
    const state = async () => ({
      client: await h.db.selectFrom('clients').selectAll().where('client_id', '=', id).executeTakeFirst(),
      secrets: await h.db.selectFrom('client_secrets').select(['id', 'expires_at']).where('client_id', '=', id).orderBy('id').execute(),
      ghosts: await h.db.selectFrom('clients').select('client_id').where('client_name', 'in', ['ghost', 'ghost without id']).execute(),
    });
    const before = await state();
    const writes: [string, () => Promise<unknown>][] = [
      ['create', () => createClient(h.service, { client_name: 'ghost', client_id: 'ghost-client', audience: [API] })],
      ['create without an id', () => createClient(h.service, { client_name: 'ghost without id', audience: [API] })],
      ['rotate', () => rotateSecret(h.service, id, 0)],
      ['disable', () => setClientEnabled(h.service, id, false)],
      ['update', () => updateClientSettings(h.service, id, { description: 'changed' })],
      ['revoke tokens', () => revokeClientTokens(h.service, id)],
      ['revoke secret', () => revokeSecret(h.service, id, secretId)],
      ['delete', () => deleteClient(h.service, id)],
    ];
    await sql`alter table audit_events rename to audit_events_gone`.execute(h.db);
    try {
      for (const [label, write] of writes) await expect(write(), label).rejects.toThrow();
    } finally {
      await sql`alter table audit_events_gone rename to audit_events`.execute(h.db);
    }
    expect(await state()).toEqual(before);
    expect((await tokenFor(id, secret)).status).toBe(200);
  });

  it('refuses an id deleted while its new client was being prepared', async () => {
    await h.createClient({ client_name: 'victim', client_id: 'victim-id', audience: [API] });
    // The delete commits while the new secret is being hashed, between validation and the insert.
    const hasher = Object.assign(Object.create(h.service.hasher) as SecretHasher, {
      hash: async (value: string) => {
        await deleteClient(h.service, 'victim-id');
        return h.service.hasher.hash(value);
      },
    });
    await expect(createClient({ ...h.service, hasher }, { client_name: 'successor', client_id: 'victim-id', audience: [API] })).rejects.toThrow(/deleted less than ACCESS_TOKEN_MAX_TTL ago/);
    expect(await h.db.selectFrom('clients').select('client_id').where('client_id', '=', 'victim-id').executeTakeFirst()).toBeUndefined();
  });

  it('records every write with the admin client as actor and the changed fields', async () => {
    const created = await call('POST', '/admin/clients', '/admin/clients', { client_name: 'tracked', audience: [API] });
    const id = created.body.client_id as string;
    await call('PATCH', `/admin/clients/${id}`, '/admin/clients/{client_id}', { description: 'd', enabled: false }, { 'If-Match': created.headers.etag! });
    await call('POST', `/admin/clients/${id}/secrets`, '/admin/clients/{client_id}/secrets');
    await call('DELETE', `/admin/clients/${id}`, '/admin/clients/{client_id}', undefined, { 'User-Agent': 'ops-console/1.0', 'X-Request-Id': 'delete-tracked' });
    const rows = (await h.auditRows('client.')).filter((r) => r.client_id === id);
    expect(rows.map((r) => [r.type, JSON.parse(r.details!) as unknown])).toEqual([
      ['client.created', { actor: adminId, fields: ['client_name', 'audience'] }],
      ['client.updated', { actor: adminId, changed: ['description', 'enabled'], revoked_before: expect.any(Number) as number }],
      ['client.secret_rotated', { actor: adminId, previous_secret_expires_in: 86_400 }],
      ['client.deleted', { actor: adminId }],
    ]);
    // Each row can be tied to its request's access-log line and caller.
    for (const row of rows) expect(row).toMatchObject({ remote_addr: expect.any(String), request_id: expect.any(String) });
    expect(rows.at(-1)).toMatchObject({ user_agent: 'ops-console/1.0', request_id: 'delete-tracked' });
  });

  it('records where an admin token revocation came from', async () => {
    const created = await call('POST', '/admin/clients', '/admin/clients', { client_name: 'leaky', audience: [API] });
    const issued = await tokenFor(created.body.client_id as string, created.body.client_secret as string);
    const { jti } = JSON.parse(Buffer.from((issued.body.access_token as string).split('.')[1]!, 'base64url').toString()) as { jti: string };
    await call('DELETE', `/admin/tokens/${jti}`, '/admin/tokens/{jti}', undefined, { 'X-Request-Id': 'revoke-leaked' });
    await call('DELETE', `/admin/tokens/${jti}`, '/admin/tokens/{jti}');
    const rows = (await h.auditRows('token.revoked')).filter((r) => r.jti === jti);
    expect(rows).toMatchObject([
      { request_id: 'revoke-leaked', remote_addr: expect.any(String), details: expect.stringContaining('"revoked":true') },
      { details: expect.stringContaining('"revoked":false') },
    ]);
  });

  it('never returns or logs a secret hash, and shows a secret only in the response that creates it', async () => {
    const created = await call('POST', '/admin/clients', '/admin/clients', { client_name: 'hashes', audience: [API] });
    const id = created.body.client_id as string;
    await call('POST', `/admin/clients/${id}/secrets`, '/admin/clients/{client_id}/secrets');
    const hashes = (await h.db.selectFrom('client_secrets').select('hash').execute()).map((r) => r.hash);
    const responses = [
      await call('GET', `/admin/clients/${id}`, '/admin/clients/{client_id}'),
      await call('GET', '/admin/clients?limit=200', '/admin/clients'),
      await call('GET', `/admin/clients/${id}/secrets`, '/admin/clients/{client_id}/secrets'),
      await call('GET', '/admin/audit-events?limit=200', '/admin/audit-events'),
    ];
    const everything = responses.map((r) => r.text).join('') + JSON.stringify(h.logLines);
    for (const hash of hashes) expect(everything).not.toContain(hash);
    expect(everything).not.toContain('$argon2');
    expect(everything).not.toContain(created.body.client_secret);
    expect(everything).not.toContain(writer);
  });
});

describe('OpenAPI document', () => {
  it('is served publicly as OpenAPI 3.1', async () => {
    const res = await h.request.get('/admin/openapi.json');
    expect(res.status).toBe(200);
    expect(res.body.openapi).toBe('3.1.0');
    expect(res.body).toEqual(JSON.parse(JSON.stringify(openApiDocument)));
  });

  it('is really checked: a response that breaks the document fails the check', () => {
    expect(() => expectConforms('GET', '/admin/keys', 200, { items: [{ kid: 1, state: 'active' }] })).toThrow();
    expect(() => expectConforms('GET', '/admin/clients', 200, { items: [], next_cursor: null, extra: true })).toThrow();
    expect(() => expectConforms('GET', '/admin/keys', 418, {})).toThrow();
    expect(() => expectConforms('GET', '/admin/nowhere', 200, {})).toThrow();
  });

  it('describes every admin route and method, and nothing else', () => {
    const table = adminRoutes({ db: h.db } as never);
    const fromRoutes = Object.entries(table)
      .filter(([path]) => path !== '/admin/openapi.json')
      .flatMap(([path, methods]) => Object.keys(methods).map((m) => `${m} ${path.replace(/:(\w+)/g, '{$1}')}`));
    const fromDoc = Object.entries(openApiDocument.paths).flatMap(([path, item]) =>
      Object.keys(item)
        .filter((k) => k !== 'parameters')
        .map((m) => `${m.toUpperCase()} ${path}`),
    );
    expect(fromDoc.sort()).toEqual(fromRoutes.sort());
  });
});

describe('admin request bodies (ADMIN_BODY_LIMIT, 64 KiB by default)', () => {
  const LIMIT = 64 * 1024;
  /** A client to create whose description makes the JSON body `bytes` long. */
  const bodyOf = (bytes: number) => {
    const shell = JSON.stringify({ client_name: 'big', audience: [API], description: '' });
    return JSON.stringify({ client_name: 'big', audience: [API], description: 'x'.repeat(bytes - shell.length) });
  };

  it('takes a body at the limit and refuses one a byte over with 413 before reading it', async () => {
    expect(bodyOf(LIMIT)).toHaveLength(LIMIT);
    const over = await h.request.post('/admin/clients').set('Authorization', `Bearer ${writer}`).type('json').send(bodyOf(LIMIT + 1));
    expect(over.status).toBe(413);
    expect(over.body).toMatchObject({ error: 'invalid_request', error_description: `the body must not exceed ${LIMIT} bytes` });
    // At the limit the body is read: refused then only for what it says (a description that long).
    const at = await h.request.post('/admin/clients').set('Authorization', `Bearer ${writer}`).type('json').send(bodyOf(LIMIT));
    expect(at.status).not.toBe(413);
  });

  it('refuses a chunked body (no Content-Length) once it grows past the limit', async () => {
    const server = h.app.listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    const { port } = server.address() as AddressInfo;
    try {
      const body = bodyOf(LIMIT + 1);
      const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const headers = { 'content-type': 'application/json', authorization: `Bearer ${writer}`, 'transfer-encoding': 'chunked' };
        const req = request({ host: '127.0.0.1', port, method: 'POST', path: '/admin/clients', headers }, (r) => {
          let text = '';
          r.on('data', (c: Buffer) => (text += c.toString()));
          r.on('end', () => resolve({ status: r.statusCode ?? 0, body: text }));
        });
        req.on('error', reject);
        req.write(body.slice(0, LIMIT / 2));
        req.end(body.slice(LIMIT / 2));
      });
      expect(res.status).toBe(413);
      expect(JSON.parse(res.body)).toMatchObject({ error: 'invalid_request' });
    } finally {
      server.close();
    }
  });
});
