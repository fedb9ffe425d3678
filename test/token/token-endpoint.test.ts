import { once } from 'node:events';
import { request } from 'node:http';
import type { AddressInfo } from 'node:net';

import { createLocalJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';

import { deleteClient, revokeClientTokens, revokeSecret, setClientEnabled, updateClientSettings } from '../../src/clients/client.service.js';
import { secretIdOf } from '../../src/clients/secret.js';
import { loadConfig } from '../../src/config.js';
import { CountingHasher, ISSUER, basic, startHarness, tamper, type Harness } from '../support/harness.js';

const API = 'https://api.example.com';
const OTHER_API = 'https://other.example.com';

let h: Harness;
let id: string;
let secret: string;

beforeAll(async () => {
  h = await startHarness();
  ({ client: { clientId: id }, secret } = await h.createClient({
    client_name: 'billing-agent',
    scope: 'read:data write:logs',
    default_scope: 'read:data',
    audience: [API, OTHER_API],
    default_audience: API,
  }));
});
afterAll(() => h.close());
beforeEach(() => {
  h.hasher.reset();
  h.clock.sync();
});

const token = (form: Record<string, string | string[]>, auth?: string) => {
  const req = h.request.post('/oauth/token').type('form');
  if (auth) void req.set('Authorization', auth);
  const body = new URLSearchParams();
  for (const [k, v] of Object.entries(form)) for (const value of [v].flat()) body.append(k, value);
  return req.send(body.toString());
};

const verify = async (accessToken: string) => {
  const jwks = createLocalJWKSet((await h.request.get('/.well-known/jwks.json')).body);
  return jwtVerify(accessToken, jwks, { issuer: ISSUER, typ: 'at+jwt', algorithms: ['RS256'] });
};

describe('successful issuance (RFC 6749 §4.4.3, RFC 9068)', () => {
  it('answers 200 with a Bearer JWT, expires_in and the granted scope, never cached', async () => {
    const res = await token({ grant_type: 'client_credentials', scope: 'read:data' }, basic(id, secret));
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.headers.pragma).toBe('no-cache');
    expect(Object.keys(res.body).sort()).toEqual(['access_token', 'expires_in', 'scope', 'token_type']);
    expect(res.body).toMatchObject({ token_type: 'Bearer', expires_in: 3600, scope: 'read:data' });
  });

  it('marks every answer, success or error, X-Content-Type-Options: nosniff', async () => {
    const answers = [
      await token({ grant_type: 'client_credentials' }, basic(id, secret)),
      await token({ grant_type: 'client_credentials' }, basic(id, tamper(secret))),
      await h.request.get('/.well-known/jwks.json'),
      await h.request.get('/no-such-endpoint'),
    ];
    expect(answers.map((r) => [r.status, r.headers['x-content-type-options']])).toEqual([
      [200, 'nosniff'],
      [401, 'nosniff'],
      [200, 'nosniff'],
      [404, 'nosniff'],
    ]);
  });

  it('logs one request line with request id, route, status, latency and the authenticated client_id only', async () => {
    const accessLine = (requestId: string) => h.logLines.find((l) => l.msg === 'request' && l.request_id === requestId);
    const ok = await token({ grant_type: 'client_credentials' }, basic(id, secret));
    expect(accessLine(ok.headers['x-request-id']!)).toMatchObject({ method: 'POST', route: '/oauth/token', status: 200, latency_ms: expect.any(Number), client_id: id });
    // A presented but unproven client_id is not logged as the requester.
    const failed = await token({ grant_type: 'client_credentials' }, basic(id, tamper(secret)));
    expect(accessLine(failed.headers['x-request-id']!)).toMatchObject({ route: '/oauth/token', status: 401, client_id: null });
  });

  it('issues an RS256 at+jwt with every RFC 9068 claim, verifiable with the served JWKS', async () => {
    const res = await token({ grant_type: 'client_credentials', scope: 'read:data write:logs' }, basic(id, secret));
    const header = decodeProtectedHeader(res.body.access_token);
    expect(header).toEqual({ alg: 'RS256', typ: 'at+jwt', kid: h.keystore.active.kid });

    const { payload } = await verify(res.body.access_token);
    expect(payload).toMatchObject({ iss: ISSUER, sub: id, client_id: id, aud: API, scope: 'read:data write:logs' });
    expect(payload.exp! - payload.iat!).toBe(3600);
    expect(payload.jti).toMatch(/^[A-Za-z0-9_-]{20,}$/);
  });

  it("stamps iat and exp with the server's clock, the one introspection judges them by", async () => {
    h.clock.freeze();
    try {
      h.clock.advance(120);
      const res = await token({ grant_type: 'client_credentials' }, basic(id, secret));
      const { iat, exp } = (await verify(res.body.access_token)).payload;
      expect({ iat, exp }).toEqual({ iat: Math.floor(h.clock.now() / 1000), exp: Math.floor(h.clock.now() / 1000) + 3600 });
    } finally {
      h.clock.sync();
    }
  });

  it('gives every token a unique jti', async () => {
    const a = await token({ grant_type: 'client_credentials' }, basic(id, secret));
    const b = await token({ grant_type: 'client_credentials' }, basic(id, secret));
    expect((await verify(a.body.access_token)).payload.jti).not.toBe((await verify(b.body.access_token)).payload.jti);
  });

  it('grants the default scope and audience when the request names none', async () => {
    const res = await token({ grant_type: 'client_credentials' }, basic(id, secret));
    expect(res.status).toBe(200);
    expect(res.body.scope).toBe('read:data');
    expect((await verify(res.body.access_token)).payload).toMatchObject({ aud: API, scope: 'read:data' });
  });

  it.each([
    ['resource (RFC 8707)', 'resource'],
    ['audience (common convention)', 'audience'],
  ])('accepts one allowed audience named by %s', async (_label, param) => {
    const res = await token({ grant_type: 'client_credentials', [param]: OTHER_API }, basic(id, secret));
    expect(res.status).toBe(200);
    expect((await verify(res.body.access_token)).payload.aud).toBe(OTHER_API);
  });

  it('decodes the Basic credentials as form-encoded (RFC 6749 §2.3.1)', async () => {
    const encodedId = [...id].map((c) => `%${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`).join('');
    const auth = `Basic ${Buffer.from(`${encodedId}:${secret}`).toString('base64')}`;
    const res = await token({ grant_type: 'client_credentials' }, auth);
    expect(res.status).toBe(200);
  });

  it('uses the client lifetime when it has one, else the server default', async () => {
    const { client, secret: s } = await h.createClient({ client_name: 'short', audience: [API], access_token_ttl: 300 });
    const res = await token({ grant_type: 'client_credentials' }, basic(client.clientId, s));
    expect(res.body.expires_in).toBe(300);
    const { payload } = await verify(res.body.access_token);
    expect(payload.exp! - payload.iat!).toBe(300);
  });

  it('accepts client_secret_post for a client registered with it, and only then', async () => {
    const { client, secret: s } = await h.createClient({ client_name: 'poster', audience: [API], token_endpoint_auth_method: 'client_secret_post' });
    const ok = await token({ grant_type: 'client_credentials', client_id: client.clientId, client_secret: s });
    expect(ok.status).toBe(200);

    const viaBasic = await token({ grant_type: 'client_credentials' }, basic(client.clientId, s));
    expect(viaBasic.status).toBe(401);
    expect(viaBasic.body).toEqual({ error: 'invalid_client', error_description: 'client authentication failed' });

    const basicClientViaPost = await token({ grant_type: 'client_credentials', client_id: id, client_secret: secret });
    expect(basicClientViaPost.status).toBe(401);

    // An empty Authorization header carries no credentials: the body's are client_secret_post.
    const withEmptyHeader = (clientId: string, clientSecret: string) =>
      h.request.post('/oauth/token').type('form').set('Authorization', '').send(new URLSearchParams({ grant_type: 'client_credentials', client_id: clientId, client_secret: clientSecret }).toString());
    expect((await withEmptyHeader(id, secret)).status).toBe(401);
    expect((await withEmptyHeader(client.clientId, s)).status).toBe(200);
  });
});

describe('client authentication failures (RFC 6749 §5.2 invalid_client)', () => {
  const generic = { error: 'invalid_client', error_description: 'client authentication failed' };
  const challenge = 'Basic realm="http://localhost:3000", error="invalid_client", error_description="client authentication failed"';

  it('answers an unknown client and a wrong secret identically, with one argon2 verify each', async () => {
    const unknown = await token({ grant_type: 'client_credentials' }, basic('no-such-client', secret));
    expect(h.hasher).toMatchObject({ verifies: 0, decoys: 1 });
    h.hasher.reset();
    const wrong = await token({ grant_type: 'client_credentials' }, basic(id, tamper(secret)));
    expect(h.hasher).toMatchObject({ verifies: 1, decoys: 0 });

    for (const res of [unknown, wrong]) {
      expect(res.status).toBe(401);
      expect(res.body).toEqual(generic);
      expect(res.headers['www-authenticate']).toBe(challenge);
      expect(res.headers['cache-control']).toBe('no-store');
    }
    expect(unknown.text).toBe(wrong.text);
  });

  it('answers a client_id holding a NUL like any unknown client (PostgreSQL refuses NUL in a query)', async () => {
    for (const auth of [basic('a\u0000b', secret), basic(`${id}\u0000`, secret)]) {
      const res = await token({ grant_type: 'client_credentials' }, auth);
      expect(res.status).toBe(401);
      expect(res.body).toEqual(generic);
    }
  });

  it('pays the same argon2 cost for a secret of the wrong format or an unknown secret id', async () => {
    for (const presented of ['hunter2', `tsec_0000000000000000_${'A'.repeat(43)}`]) {
      h.hasher.reset();
      const res = await token({ grant_type: 'client_credentials' }, basic(id, presented));
      expect(res.status).toBe(401);
      expect(res.body).toEqual(generic);
      expect(h.hasher.verifies + h.hasher.decoys).toBe(1);
    }
  });

  it('never echoes the presented secret', async () => {
    const res = await token({ grant_type: 'client_credentials' }, basic(id, `${secret}x`));
    expect(res.text).not.toContain(secret);
    expect(JSON.stringify(res.headers)).not.toContain(secret);
  });

  it('refuses a disabled client with the same answer', async () => {
    const { client, secret: s } = await h.createClient({ client_name: 'off', audience: [API], enabled: false });
    const res = await token({ grant_type: 'client_credentials' }, basic(client.clientId, s));
    expect(res.status).toBe(401);
    expect(res.body).toEqual(generic);
  });

  it('keeps both secrets working during rotation, then refuses the expired one', async () => {
    const { client, secret: first } = await h.createClient({ client_name: 'rotating', audience: [API] });
    const second = await h.rotateSecret(client.clientId, 600);
    expect((await token({ grant_type: 'client_credentials' }, basic(client.clientId, first))).status).toBe(200);
    expect((await token({ grant_type: 'client_credentials' }, basic(client.clientId, second))).status).toBe(200);

    h.clock.advance(600);
    const expired = await token({ grant_type: 'client_credentials' }, basic(client.clientId, first));
    expect(expired.status).toBe(401);
    expect(expired.body).toEqual(generic);
    expect((await token({ grant_type: 'client_credentials' }, basic(client.clientId, second))).status).toBe(200);
  });

  it('keeps the newest secret when two rotations fall within the same second', async () => {
    h.clock.freeze();
    try {
      // Secrets made in the same second used to be ordered by their random ids: each run had an
      // even chance of revoking the secret just handed out and keeping the older one.
      for (let run = 0; run < 12; run += 1) {
        const { client, secret: first } = await h.createClient({ client_name: `twice-${run}`, audience: [API] });
        const second = await h.rotateSecret(client.clientId, 600);
        const third = await h.rotateSecret(client.clientId, 600);
        expect((await token({ grant_type: 'client_credentials' }, basic(client.clientId, third))).status).toBe(200);
        expect((await token({ grant_type: 'client_credentials' }, basic(client.clientId, second))).status).toBe(200);
        expect((await token({ grant_type: 'client_credentials' }, basic(client.clientId, first))).status).toBe(401);
      }
    } finally {
      h.clock.sync();
    }
  });

  it.each([
    ['no credentials at all', undefined, {}],
    ['a Basic header without a colon', `Basic ${Buffer.from('just-an-id').toString('base64')}`, {}],
    ['a Basic header that is not base64', 'Basic %%%', {}],
    ['a Basic header with an empty secret', `Basic ${Buffer.from('some-id:').toString('base64')}`, {}],
    ['a Basic header with a non-ASCII id', `Basic ${Buffer.from('clïent:secret').toString('base64')}`, {}],
    ['a Basic header with a broken percent-escape', `Basic ${Buffer.from('%zz:secret').toString('base64')}`, {}],
    ['another scheme', 'Bearer abc', {}],
    ['a client_id with an empty client_secret', undefined, { client_id: 'some-id', client_secret: '' }],
  ])('answers %s with 401 invalid_client and a challenge (RFC 6749 §5.2)', async (_label, auth, form) => {
    const res = await token({ grant_type: 'client_credentials', ...form }, auth);
    expect(res.status).toBe(401);
    expect(res.body).toEqual(generic);
    expect(res.headers['www-authenticate']).toBe(challenge);
  });

  it('answers a client_secret_post failure with the same challenge as a Basic one', async () => {
    const res = await token({ grant_type: 'client_credentials', client_id: 'no-such-client', client_secret: secret });
    expect(res.status).toBe(401);
    expect(res.body).toEqual(generic);
    expect(res.headers['www-authenticate']).toBe(challenge);
  });

  it.each(['clïent', 'a\tb', 'x'.repeat(5000)])('treats an unrepresentable client_id %#  like any unknown client', async (clientId) => {
    const res = await token({ grant_type: 'client_credentials', client_id: clientId, client_secret: secret });
    expect(res.status).toBe(401);
    expect(res.body).toEqual(generic);
    expect(h.hasher).toMatchObject({ verifies: 0, decoys: 1 });
  });

  it('ignores a DPoP header: Tessera issues Bearer tokens only', async () => {
    const res = await token({ grant_type: 'client_credentials' }, basic(id, secret)).set('DPoP', 'not-a-proof');
    expect(res.status).toBe(200);
    expect(res.body.token_type).toBe('Bearer');
  });

  it('rejects credentials sent both ways', async () => {
    const res = await token({ grant_type: 'client_credentials', client_id: id, client_secret: secret }, basic(id, secret));
    expect(res.status).toBe(400);
    expect(res.body.error).toBe('invalid_request');
  });
});

describe('verified-credential cache', () => {
  const tokenFor = (clientId: string, s: string) => token({ grant_type: 'client_credentials' }, basic(clientId, s));

  it('skips argon2 for a secret verified before, but never for a wrong one', async () => {
    const { client, secret: s } = await h.createClient({ client_name: 'cached', audience: [API] });
    await tokenFor(client.clientId, s);
    h.hasher.reset();
    expect((await tokenFor(client.clientId, s)).status).toBe(200);
    expect(h.hasher).toMatchObject({ verifies: 0, decoys: 0 });
    expect((await tokenFor(client.clientId, tamper(s))).status).toBe(401);
    expect(h.hasher).toMatchObject({ verifies: 1, decoys: 0 });
  });

  it('refuses a cached secret at once when the client is disabled or the secret revoked', async () => {
    const { client, secret: s } = await h.createClient({ client_name: 'cached-2', audience: [API] });
    expect((await tokenFor(client.clientId, s)).status).toBe(200);
    await setClientEnabled(h.service, client.clientId, false);
    expect((await tokenFor(client.clientId, s)).status).toBe(401);
    await setClientEnabled(h.service, client.clientId, true);
    // Disabling revoked the tokens issued up to its second: none is issued within it.
    h.clock.advance(1);
    expect((await tokenFor(client.clientId, s)).status).toBe(200);
    await h.rotateSecret(client.clientId, 0);
    expect((await tokenFor(client.clientId, s)).status).toBe(401);
  });

  it('refuses a request whose argon2 verify was under way when the change was committed', async () => {
    const changes: [string, (clientId: string, s: string) => Promise<unknown>][] = [
      ['secret revoked', (clientId, s) => revokeSecret(h.service, clientId, secretIdOf(s)!)],
      ['rotated without grace', (clientId) => h.rotateSecret(clientId, 0)],
      ['client disabled', (clientId) => setClientEnabled(h.service, clientId, false)],
      ['client deleted', (clientId) => deleteClient(h.service, clientId)],
    ];
    for (const [name, change] of changes) {
      const { client, secret: s } = await h.createClient({ client_name: `in-flight-${name}`, audience: [API] });
      // The verify starts, then waits (as in a busy argon2 queue) until the change is committed.
      let started!: () => void;
      const verifying = new Promise<void>((resolve) => (started = resolve));
      let release!: () => void;
      const released = new Promise<void>((resolve) => (release = resolve));
      h.hasher.verify = async (hash, presented) => {
        started();
        await released;
        return CountingHasher.prototype.verify.call(h.hasher, hash, presented);
      };
      try {
        const pending = tokenFor(client.clientId, s).then((res) => res); // supertest sends once awaited
        await verifying;
        await change(client.clientId, s);
        release();
        expect({ name, status: (await pending).status }).toEqual({ name, status: 401 });
      } finally {
        delete (h.hasher as { verify?: unknown }).verify;
      }
    }
  });
});

describe('tokens revoked this second', () => {
  it('are not issued again within that second: 503 with Retry-After, then the retry gets an active token', async () => {
    // One token a minute: the refusal must not use it up, or the retry would get 429.
    const { client, secret: s } = await h.createClient({ client_name: 'revoked-now', audience: [API], token_rate_limit: 1 });
    h.clock.freeze();
    try {
      await revokeClientTokens(h.service, client.clientId);
      const refused = await token({ grant_type: 'client_credentials' }, basic(client.clientId, s));
      expect(refused.status).toBe(503);
      expect(refused.headers['retry-after']).toBe('1');
      expect(refused.body).toEqual({ error: 'temporarily_unavailable', error_description: "the client's tokens were revoked this second; retry shortly" });
      expect((await h.auditRows('token.')).at(-1)).toMatchObject({ type: 'token.failed', client_id: client.clientId, reason: 'tokens_revoked_this_second' });
      h.clock.advance(1);
      expect((await token({ grant_type: 'client_credentials' }, basic(client.clientId, s))).status).toBe(200);
    } finally {
      h.clock.sync();
    }
  });
});

describe('a change answered while the request waited for the rate limit', () => {
  it('applies to the request: the policy judges the client as it is now', async () => {
    const changes: [string, (clientId: string) => Promise<unknown>, number, string][] = [
      ['scope narrowed', (clientId) => updateClientSettings(h.service, clientId, { scope: 'read', default_scope: 'read' }), 400, 'invalid_scope'],
      ['audience removed', (clientId) => updateClientSettings(h.service, clientId, { audience: [OTHER_API] }), 400, 'invalid_target'],
      ['client disabled', (clientId) => setClientEnabled(h.service, clientId, false), 401, 'invalid_client'],
    ];
    for (const [name, change, status, error] of changes) {
      const { client, secret: s } = await h.createClient({ client_name: `rate-wait-${name}`, scope: 'read write', audience: [API, OTHER_API] });
      const form = { grant_type: 'client_credentials', scope: 'read write', resource: API };
      expect((await token(form, basic(client.clientId, s))).status).toBe(200);
      // On PostgreSQL the shared bucket is a row: the take may wait for a connection or its lock.
      const take = h.limits.takeToken.bind(h.limits);
      h.limits.takeToken = async (clientId, rate) => {
        await change(clientId);
        return take(clientId, rate);
      };
      try {
        const res = await token(form, basic(client.clientId, s));
        expect({ name, status: res.status, error: (res.body as { error?: string }).error }).toEqual({ name, status, error });
      } finally {
        delete (h.limits as { takeToken?: unknown }).takeToken;
      }
    }
  });
});

const filler = (count: number) => Object.fromEntries(Array.from({ length: count }, (_, i) => [`p${i}`, 'x']));

describe('request and policy errors (RFC 6749 §5.2, RFC 8707)', () => {
  const cases: [string, Record<string, string | string[]>, number, string][] = [
    ['missing grant_type', {}, 400, 'invalid_request'],
    ['a duplicated parameter', { grant_type: 'client_credentials', scope: ['read:data', 'read:data'] }, 400, 'invalid_request'],
    ['an unsupported grant type', { grant_type: 'password' }, 400, 'unsupported_grant_type'],
    ['a scope the client may not have', { grant_type: 'client_credentials', scope: 'read:data admin' }, 400, 'invalid_scope'],
    ['a scope with invalid characters', { grant_type: 'client_credentials', scope: 'read"data' }, 400, 'invalid_scope'],
    ['an audience the client may not use', { grant_type: 'client_credentials', resource: 'https://evil.example.com' }, 400, 'invalid_target'],
    ['an audience that is not an absolute URI', { grant_type: 'client_credentials', resource: 'billing' }, 400, 'invalid_target'],
    ['two resources', { grant_type: 'client_credentials', resource: [API, OTHER_API] }, 400, 'invalid_target'],
    ['a duplicated audience parameter', { grant_type: 'client_credentials', audience: [API, API] }, 400, 'invalid_request'],
    ['both resource and audience', { grant_type: 'client_credentials', resource: API, audience: API }, 400, 'invalid_request'],
    ['more than 100 parameters', { grant_type: 'client_credentials', ...filler(100) }, 400, 'invalid_request'],
  ];

  it.each(cases)('answers %s with the RFC error code and no token', async (_label, form, status, error) => {
    const res = await token(form, basic(id, secret));
    expect(res.status).toBe(status);
    expect(res.body.error).toBe(error);
    expect(typeof res.body.error_description).toBe('string');
    expect(res.body.access_token).toBeUndefined();
    expect(res.headers['cache-control']).toBe('no-store');
  });

  it('refuses two Authorization headers at every endpoint that reads one, and audits the token request', async () => {
    // Node keeps the first and drops the second; a proxy may have judged the other one.
    const server = h.app.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as AddressInfo;
    const post = (path: string, body: string, headers: Record<string, string>) =>
      new Promise<{ status: number; body: Record<string, unknown> }>((resolve, reject) => {
        const req = request({ host: '127.0.0.1', port, path, method: 'POST', headers: ['Host', `127.0.0.1:${port}`, ...Object.entries(headers).flat(), 'Content-Length', String(Buffer.byteLength(body)), 'Authorization', basic(id, secret), 'Authorization', basic(id, tamper(secret))] }, (res) => {
          let text = '';
          res.setEncoding('utf8').on('data', (chunk: string) => (text += chunk)).on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(text) as Record<string, unknown> }));
        });
        req.on('error', reject).end(body);
      });
    try {
      const mark = (await h.auditRows('token.failed')).length;
      const form = { 'content-type': 'application/x-www-form-urlencoded' };
      for (const [path, body] of [['/oauth/token', 'grant_type=client_credentials'], ['/oauth/introspect', 'token=x'], ['/oauth/revoke', 'token=x']] as const) {
        const res = await post(path, body, form);
        expect(res.status).toBe(400);
        expect(res.body.error).toBe('invalid_request');
      }
      const admin = await post('/admin/clients', '{}', { 'content-type': 'application/json' });
      expect(admin.status).toBe(400);
      expect(admin.body.error).toBe('invalid_request');
      expect((await h.auditRows('token.failed')).slice(mark)).toMatchObject([{ error: 'invalid_request', reason: 'repeated_authorization' }]);
    } finally {
      server.close();
    }
  });

  it.each<[string, Record<string, string | string[]>, string]>([
    ['an unsupported grant type', { grant_type: 'password' }, 'unsupported_grant_type'],
    ['a malformed scope', { grant_type: 'client_credentials', scope: 'a  b' }, 'invalid_scope'],
    ['both resource and audience', { grant_type: 'client_credentials', resource: API, audience: API }, 'invalid_request'],
    ['two resources', { grant_type: 'client_credentials', resource: [API, OTHER_API] }, 'invalid_target'],
  ])('refuses %s before any argon2 work, whoever sends it', async (_label, form, error) => {
    const res = await token(form, basic('no-such-client', secret));
    expect(res.status).toBe(400);
    expect(res.body.error).toBe(error);
    expect(h.hasher).toMatchObject({ verifies: 0, decoys: 0 });
  });

  it('treats an empty parameter as omitted (RFC 6749 §3.2)', async () => {
    const res = await token({ grant_type: 'client_credentials', scope: '', resource: '', client_id: '', client_secret: '' }, basic(id, secret));
    expect(res.status).toBe(200);
    expect(res.body.scope).toBe('read:data');
    expect((await verify(res.body.access_token)).payload.aud).toBe(API);
  });

  it('ignores parameters it does not know, even repeated, and never echoes their names', async () => {
    const name = '"\\\u202e';
    const res = await token({ grant_type: 'client_credentials', [name]: ['1', '2'], foo: ['a', 'b'] }, basic(id, secret));
    expect(res.status).toBe(200);
    const repeated = await token({ grant_type: 'client_credentials', client_id: [id, id] }, basic(id, secret));
    expect(repeated.body).toEqual({ error: 'invalid_request', error_description: 'parameter client_id must not be repeated' });
  });

  it.each(['read:data  write:logs', ' read:data', 'read:data\twrite:logs'])('answers a scope that breaks RFC 6749 §3.3 syntax (%j) with invalid_scope', async (scope) => {
    const res = await token({ grant_type: 'client_credentials', scope }, basic(id, secret));
    expect(res.status).toBe(400);
    expect(res.body.error).toBe('invalid_scope');
    expect((await h.auditRows('token.failed')).at(-1)).toMatchObject({ reason: 'scope_malformed' });
  });

  it('accepts an ASCII form labelled with another ASCII-compatible charset, and refuses other bytes under it', async () => {
    const send = (body: string) => h.request.post('/oauth/token').set('Authorization', basic(id, secret)).set('Content-Type', 'application/x-www-form-urlencoded; charset=ISO-8859-1').send(body);
    const ascii = await send('grant_type=client_credentials');
    expect(ascii.body).toMatchObject({ token_type: 'Bearer' });
    const accented = await send('grant_type=client_credentials&scope=caf\u00e9');
    expect(accented.status).toBe(400);
    expect(accented.body.error).toBe('invalid_request');
    const other = await h.request.post('/oauth/token').set('Authorization', basic(id, secret)).set('Content-Type', 'application/x-www-form-urlencoded; charset=utf-16').send('grant_type=client_credentials');
    expect(other.status).toBe(400);
  });

  it('rejects a body that is not form-encoded', async () => {
    const res = await h.request.post('/oauth/token').set('Authorization', basic(id, secret)).send({ grant_type: 'client_credentials' });
    expect(res.status).toBe(400);
    expect(res.body.error).toBe('invalid_request');
  });

  it('answers unauthorized_client for a client without the client_credentials grant', async () => {
    const { client, secret: s } = await h.createClient({ client_name: 'rs-only', audience: [API], grant_types: [] });
    const res = await token({ grant_type: 'client_credentials' }, basic(client.clientId, s));
    expect(res.status).toBe(400);
    expect(res.body.error).toBe('unauthorized_client');
  });

  it('answers invalid_target when neither the request nor the client names an audience', async () => {
    const { client, secret: s } = await h.createClient({ client_name: 'two-apis', audience: [API, OTHER_API] });
    const res = await token({ grant_type: 'client_credentials' }, basic(client.clientId, s));
    expect(res.status).toBe(400);
    expect(res.body.error).toBe('invalid_target');
  });

  it('answers JSON even to a client that prefers HTML', async () => {
    const res = await h.request.post('/oauth/token').type('form').set('Accept', 'text/html').send('grant_type=client_credentials');
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(res.body.error).toBe('invalid_client');
  });
});

describe('only Tessera routes are reachable', () => {
  it.each([
    ['GET', '/auth'],
    ['GET', '/me'],
    ['POST', '/me'],
    ['GET', '/session/end'],
    ['POST', '/reg'],
    ['POST', '/device/auth'],
    ['GET', '/device'],
    ['POST', '/request'],
    ['POST', '/token/introspection'],
    ['POST', '/token/revocation'],
    ['GET', '/jwks'],
    ['GET', '/interaction/x'],
    ['POST', '/token'],
  ])('%s %s answers 404', async (method, path) => {
    const res = await h.request[method === 'GET' ? 'get' : 'post'](path);
    expect(res.status).toBe(404);
    expect(res.body).toEqual({ error: 'not_found', error_description: 'no such endpoint' });
  });

  it('answers 405 for a known path with the wrong method, and no CORS headers', async () => {
    const res = await h.request.get('/oauth/token');
    expect(res.status).toBe(405);
    expect(res.headers.allow).toBe('POST, OPTIONS');
    const withOrigin = await token({ grant_type: 'client_credentials' }, basic(id, secret)).set('Origin', 'https://app.example.com');
    expect(withOrigin.status).toBe(200);
    expect(Object.keys(withOrigin.headers).filter((k) => k.startsWith('access-control-'))).toEqual([]);
  });
});

describe('request size (16 KiB, declared up front)', () => {
  const form = (bytes: number) => {
    const head = 'grant_type=client_credentials&pad=';
    return head + 'x'.repeat(bytes - head.length);
  };

  it('accepts a body of exactly 16 KiB', async () => {
    const res = await h.request.post('/oauth/token').set('Authorization', basic(id, secret)).type('form').send(form(16 * 1024));
    expect(res.status).toBe(200);
  });

  it('refuses a larger body with 413 before reading it, and audits it', async () => {
    const res = await h.request.post('/oauth/token').set('Authorization', basic(id, secret)).type('form').send(form(16 * 1024 + 1));
    expect(res.status).toBe(413);
    expect(res.body.error).toBe('invalid_request');
    expect(res.headers['cache-control']).toBe('no-store');
    const [row] = (await h.auditRows('token.failed')).slice(-1);
    expect(row).toMatchObject({ reason: 'body_too_large', error: 'invalid_request', client_id: null });
  });

  it('answers a body cut off by the caller as its failure, not a server error', async () => {
    const server = h.app.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as AddressInfo;
    try {
      const mark = (await h.auditRows('token.failed')).length;
      const req = request({ host: '127.0.0.1', port, method: 'POST', path: '/oauth/token', headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basic(id, secret), 'content-length': '100' } });
      req.on('error', () => {});
      req.write('grant_type=client_');
      await new Promise((resolve) => setTimeout(resolve, 50));
      req.destroy();
      let rows: Awaited<ReturnType<typeof h.auditRows>> = [];
      for (let i = 0; i < 100 && rows.length === 0; i += 1) {
        await new Promise((resolve) => setTimeout(resolve, 20));
        rows = (await h.auditRows('token.failed')).slice(mark);
      }
      expect(rows).toMatchObject([{ error: 'invalid_request', reason: 'body_incomplete', client_id: id }]);
    } finally {
      server.close();
    }
  });

  it('refuses a chunked body without Content-Length with 411', async () => {
    const server = h.app.listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    const { port } = server.address() as AddressInfo;
    try {
      const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = request({ host: '127.0.0.1', port, method: 'POST', path: '/oauth/token', headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basic(id, secret), 'transfer-encoding': 'chunked' } }, (r) => {
          let body = '';
          r.on('data', (c: Buffer) => (body += c.toString()));
          r.on('end', () => resolve({ status: r.statusCode ?? 0, body }));
        });
        req.on('error', reject);
        req.write('grant_type=client_');
        req.end('credentials');
      });
      expect(res.status).toBe(411);
      expect(JSON.parse(res.body)).toMatchObject({ error: 'invalid_request' });
    } finally {
      server.close();
    }
  });
});

describe('CORS on the token endpoint (TOKEN_CORS_ORIGINS)', () => {
  let c: Harness;
  let cid: string;
  let csecret: string;
  beforeAll(async () => {
    c = await startHarness({ TOKEN_CORS_ORIGINS: 'https://app.example.com' });
    ({ client: { clientId: cid }, secret: csecret } = await c.createClient({ client_name: 'spa-backend', audience: [API] }));
  });
  afterAll(() => c.close());

  const corsHeaders = (headers: Record<string, string>) => Object.fromEntries(Object.entries(headers).filter(([k]) => k.startsWith('access-control-')));

  it('answers a preflight from a listed origin with what the token request needs, and nothing to others', async () => {
    const listed = await c.request.options('/oauth/token').set('Origin', 'https://app.example.com').set('Access-Control-Request-Method', 'POST');
    expect(listed.status).toBe(204);
    expect(corsHeaders(listed.headers)).toEqual({
      'access-control-allow-origin': 'https://app.example.com',
      'access-control-allow-methods': 'POST',
      'access-control-allow-headers': 'Authorization, Content-Type',
      'access-control-max-age': '600',
    });
    expect(listed.headers.vary).toBe('Origin');
    const other = await c.request.options('/oauth/token').set('Origin', 'https://evil.example.com').set('Access-Control-Request-Method', 'POST');
    expect(other.status).toBe(204);
    expect(corsHeaders(other.headers)).toEqual({});
  });

  it('lets a listed origin read the token response, and only that origin', async () => {
    const post = (origin: string) => c.request.post('/oauth/token').set('Authorization', basic(cid, csecret)).set('Origin', origin).type('form').send({ grant_type: 'client_credentials' });
    const listed = await post('https://app.example.com');
    expect(listed.status).toBe(200);
    expect(corsHeaders(listed.headers)).toEqual({ 'access-control-allow-origin': 'https://app.example.com' });
    expect(corsHeaders((await post('https://evil.example.com')).headers)).toEqual({});
  });

  it('refuses a configuration that lists something other than an origin', () => {
    expect(() => loadConfig({ TOKEN_CORS_ORIGINS: 'https://app.example.com/path' })).toThrow(/TOKEN_CORS_ORIGINS/);
  });
});
