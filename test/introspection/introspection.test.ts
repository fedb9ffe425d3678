import { generateKeyPairSync, createHmac, createPublicKey } from 'node:crypto';

import Koa from 'koa';
import supertest from 'supertest';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';

import { ClientRecords } from '../../src/clients/client-records.js';
import { deleteClient, revokeClientTokens, setClientEnabled, updateClientSettings } from '../../src/clients/client.service.js';
import { VerifiedCredentialCache } from '../../src/clients/verified-credentials.js';
import { introspectEndpoint } from '../../src/introspection/index.js';
import { createTokenInspector } from '../../src/introspection/inspect-token.js';
import { createTokenVerifier } from '../../src/introspection/verify-token.js';
import { createAuthenticator } from '../../src/token/authenticate-client.js';
import { ISSUER, basic, mint, startHarness, type Harness } from '../support/harness.js';

const API = 'https://api.example.com';
const OTHER = 'https://other.example.com';

let h: Harness;
let workload: { id: string; secret: string };
let rs: { id: string; secret: string };
let rsOther: { id: string; secret: string };
let rsAll: { id: string; secret: string };

const client = async (input: Parameters<Harness['createClient']>[0]) => {
  const { client: c, secret } = await h.createClient(input);
  return { id: c.clientId, secret };
};

beforeAll(async () => {
  h = await startHarness();
  // Clients that exist since an hour ago, so tokens minted with earlier iat values are theirs.
  h.clock.advance(-3600);
  workload = await client({ client_name: 'workload', scope: 'read:data write:logs', audience: [API, OTHER], default_audience: API });
  rs = await client({ client_name: 'api', audience: [], grant_types: [], introspection_audiences: [API] });
  rsOther = await client({ client_name: 'other-api', grant_types: [], introspection_audiences: [OTHER] });
  rsAll = await client({ client_name: 'gateway', grant_types: [], introspection_audiences: ['*'] });
});
afterAll(() => h.close());
beforeEach(() => h.clock.sync());

const issue = async (form = 'grant_type=client_credentials&scope=read:data') => {
  const res = await h.request.post('/oauth/token').type('form').set('Authorization', basic(workload.id, workload.secret)).send(form);
  expect(res.status).toBe(200);
  return res.body.access_token as string;
};

const introspect = (token: string, caller = rs, extra = '') =>
  h.request
    .post('/oauth/introspect')
    .type('form')
    .set('Authorization', basic(caller.id, caller.secret))
    .send(`token=${encodeURIComponent(token)}${extra}`);

const expectInactive = async (token: string, caller = rs) => {
  const res = await introspect(token, caller);
  expect(res.status).toBe(200);
  expect(res.body).toEqual({ active: false });
};

describe('POST /oauth/introspect (RFC 7662)', () => {
  it('answers an active token with every claim, never cached', async () => {
    const token = await issue();
    const res = await introspect(token);
    expect(res.status).toBe(200);
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    const [, payload] = token.split('.');
    const claims = JSON.parse(Buffer.from(payload!, 'base64url').toString()) as Record<string, unknown>;
    expect(res.body).toEqual({
      active: true,
      scope: 'read:data',
      client_id: workload.id,
      sub: workload.id,
      aud: API,
      iss: ISSUER,
      iat: claims.iat,
      exp: claims.exp,
      jti: claims.jti,
      token_type: 'Bearer',
    });
  });

  it('accepts client_secret_post callers and a token_type_hint', async () => {
    const poster = await client({ client_name: 'rs-post', grant_types: [], introspection_audiences: [API], token_endpoint_auth_method: 'client_secret_post' });
    const token = await issue();
    const res = await h.request
      .post('/oauth/introspect')
      .type('form')
      .send(`token=${token}&token_type_hint=access_token&client_id=${poster.id}&client_secret=${poster.secret}`);
    expect(res.body.active).toBe(true);
  });

  it('tells a resource server nothing about tokens for another audience', async () => {
    const token = await issue();
    await expectInactive(token, rsOther);
    expect((await introspect(token, rsAll)).body.active).toBe(true);
    const forOther = await issue(`grant_type=client_credentials&resource=${OTHER}`);
    expect((await introspect(forOther, rsOther)).body.active).toBe(true);
    await expectInactive(forOther, rs);
  });

  it('treats a caller without introspection rights like any other: nothing active', async () => {
    await expectInactive(await issue(), workload);
  });

  describe('inactive tokens', () => {
    it('expired (beyond the clock leeway)', async () => {
      h.clock.freeze();
      const token = await mint(h, { sub: workload.id, client_id: workload.id, aud: API });
      expect((await introspect(token)).body.active).toBe(true);
      h.clock.advance(600 + h.config.clockLeeway - 1);
      expect((await introspect(token)).body.active).toBe(true);
      h.clock.advance(2);
      await expectInactive(token);
    });

    it('issued in the future (iat beyond the leeway)', async () => {
      const now = Math.floor(Date.now() / 1000);
      await expectInactive(await mint(h, { sub: workload.id, client_id: workload.id, aud: API, iat: now + 3600, exp: now + 7200 }));
    });

    it.each([
      ['a wrong issuer', { iss: 'https://evil.example.com' }],
      ['a missing jti', { jti: undefined }],
      ['an array audience', { aud: [API] }],
      ['a numeric client_id', { client_id: 42 }],
    ])('with %s', async (_label, claims) => {
      await expectInactive(await mint(h, { sub: workload.id, client_id: workload.id, aud: API, ...claims }));
    });

    it('without typ at+jwt', async () => {
      await expectInactive(await mint(h, { sub: workload.id, client_id: workload.id, aud: API }, { header: { typ: 'JWT' } }));
    });

    it('signed by a foreign key under our kid', async () => {
      const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
      await expectInactive(await mint(h, { sub: workload.id, client_id: workload.id, aud: API }, { key: privateKey }));
    });

    it('with an unknown kid', async () => {
      await expectInactive(await mint(h, { sub: workload.id, client_id: workload.id, aud: API }, { header: { kid: 'not-ours' } }));
    });

    it('with alg none', async () => {
      const enc = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
      const now = Math.floor(Date.now() / 1000);
      const token = `${enc({ alg: 'none', typ: 'at+jwt', kid: h.keystore.active.kid })}.${enc({ iss: ISSUER, sub: workload.id, client_id: workload.id, aud: API, iat: now, exp: now + 60, jti: 'x' })}.`;
      await expectInactive(token);
    });

    it('HS256 signed with our public key as the secret (algorithm confusion)', async () => {
      const enc = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
      const now = Math.floor(Date.now() / 1000);
      const input = `${enc({ alg: 'HS256', typ: 'at+jwt', kid: h.keystore.active.kid })}.${enc({ iss: ISSUER, sub: workload.id, client_id: workload.id, aud: API, iat: now, exp: now + 60, jti: 'x' })}`;
      const pem = createPublicKey({ key: h.keystore.active.publicJwk as never, format: 'jwk' }).export({ type: 'spki', format: 'pem' });
      for (const secret of [pem, JSON.stringify(h.keystore.active.publicJwk)]) {
        await expectInactive(`${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`);
      }
    });

    it('with a tampered payload', async () => {
      const [header, payload, signature] = (await issue()).split('.');
      const claims = JSON.parse(Buffer.from(payload!, 'base64url').toString()) as Record<string, unknown>;
      const forged = Buffer.from(JSON.stringify({ ...claims, scope: 'read:data write:logs admin' })).toString('base64url');
      await expectInactive(`${header}.${forged}.${signature}`);
    });

    it.each([
      ['garbage', 'not a token'],
      ['a JWE', 'eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.a.b.c.d'],
      ['three empty segments', '..'],
      ['bad base64', 'e$$.e$$.e$$'],
      ['a huge string', 'a'.repeat(15_000)],
      ['unicode', '€.€.€'],
    ])('%s', async (_label, token) => {
      await expectInactive(token);
    });

    it.each([
      ['the CLI', (id: string, enabled: boolean) => setClientEnabled(h.service, id, enabled)],
      ['an admin PATCH', (id: string, enabled: boolean) => updateClientSettings(h.service, id, { enabled })],
    ])('after its client was disabled (%s), and still once it is enabled again; later tokens are active', async (_way, setEnabled) => {
      const temp = await client({ client_name: 'temp', audience: [API] });
      const issueTemp = async () =>
        (await h.request.post('/oauth/token').type('form').set('Authorization', basic(temp.id, temp.secret)).send('grant_type=client_credentials')).body.access_token as string;
      const token = await issueTemp();
      expect((await introspect(token)).body.active).toBe(true);
      h.clock.freeze();
      const disabledAt = Math.floor(h.clock.now() / 1000);
      await setEnabled(temp.id, false);
      await expectInactive(token);
      // Issued the next second by an instance whose cache had not seen the disable yet.
      const whileDisabled = await mint(h, { sub: temp.id, client_id: temp.id, aud: API, iat: disabledAt + 1 });
      h.clock.advance(2);
      await setEnabled(temp.id, true);
      await expectInactive(token);
      await expectInactive(whileDisabled);
      h.clock.advance(1);
      expect((await introspect(await mint(h, { sub: temp.id, client_id: temp.id, aud: API, iat: disabledAt + 3 }))).body.active).toBe(true);
    });

    it('after a repeated disable too; enabling a client that is enabled revokes nothing', async () => {
      h.clock.freeze();
      const temp = await client({ client_name: 'twice', audience: [API] });
      const revokedBefore = async () =>
        (await h.db.selectFrom('clients').select('tokens_revoked_before').where('client_id', '=', temp.id).executeTakeFirstOrThrow()).tokens_revoked_before;
      await setClientEnabled(h.service, temp.id, true);
      expect(await revokedBefore()).toBeNull();
      await setClientEnabled(h.service, temp.id, false);
      const first = Number(await revokedBefore());
      h.clock.advance(10);
      await setClientEnabled(h.service, temp.id, false);
      expect(Number(await revokedBefore())).toBe(first + 10);
    });

    it('after its client was deleted, even if a new client takes the same id', async () => {
      h.clock.advance(-60);
      await h.createClient({ client_id: 'reused-id', client_name: 'first', audience: [API] });
      h.clock.sync();
      const token = await mint(h, { sub: 'reused-id', client_id: 'reused-id', aud: API, iat: Math.floor(Date.now() / 1000) - 5 });
      expect((await introspect(token)).body.active).toBe(true);
      await deleteClient(h.service, 'reused-id');
      await expectInactive(token);
      // The id is not given out again while tokens of its old holder may still be valid…
      await expect(h.createClient({ client_id: 'reused-id', client_name: 'second', audience: [API] })).rejects.toThrow(/deleted less than/);
      // …and once it is, the old tokens predate the new client and stay inactive.
      h.clock.advance(h.config.accessTokenMaxTtl + 1);
      await h.createClient({ client_id: 'reused-id', client_name: 'second', audience: [API] });
      h.clock.sync();
      await expectInactive(token);
    });

    it('after its client had all tokens revoked; later tokens stay active', async () => {
      const now = Math.floor(Date.now() / 1000);
      const before = await mint(h, { sub: workload.id, client_id: workload.id, aud: API, iat: now - 30 });
      const sameSecond = await mint(h, { sub: workload.id, client_id: workload.id, aud: API, iat: now - 20 });
      const after = await mint(h, { sub: workload.id, client_id: workload.id, aud: API, iat: now - 19 });
      h.clock.advance(-20);
      await revokeClientTokens(h.service, workload.id);
      h.clock.sync();
      await expectInactive(before);
      await expectInactive(sameSecond);
      expect((await introspect(after)).body.active).toBe(true);
    });
  });

  describe('errors', () => {
    const generic = { error: 'invalid_client', error_description: 'client authentication failed' };

    it.each([
      ['no credentials', undefined],
      ['a wrong secret', () => basic(rs.id, `${rs.secret}x`)],
      ['an unknown client', () => basic('ghost', rs.secret)],
      ['a malformed header', () => 'Basic !!!'],
    ])('refuses a caller with %s: 401 invalid_client with a challenge', async (_label, auth) => {
      const req = h.request.post('/oauth/introspect').type('form');
      if (auth) void req.set('Authorization', auth());
      const res = await req.send('token=abc');
      expect(res.status).toBe(401);
      expect(res.body).toEqual(generic);
      expect(res.headers['www-authenticate']).toBe(`Basic realm="${ISSUER}", error="invalid_client", error_description="client authentication failed"`);
      expect(res.headers['cache-control']).toBe('no-store');
    });

    it('costs a caller whose credentials were verified before no argon2 work', async () => {
      const token = await issue();
      await introspect(token);
      h.hasher.reset();
      expect((await introspect(token)).body.active).toBe(true);
      expect(h.hasher).toMatchObject({ verifies: 0, decoys: 0 });
    });

    it('pays one argon2 verify for an unknown caller, as for a wrong secret', async () => {
      h.hasher.reset();
      await h.request.post('/oauth/introspect').type('form').set('Authorization', basic('ghost', rs.secret)).send('token=abc');
      expect(h.hasher).toMatchObject({ verifies: 0, decoys: 1 });
    });

    it('refuses a disabled caller and a caller using another auth method, as the token endpoint does', async () => {
      const off = await client({ client_name: 'rs-off', grant_types: [], introspection_audiences: [API], enabled: false });
      expect((await introspect('abc', off)).status).toBe(401);
      const viaPost = await h.request.post('/oauth/introspect').type('form').send(`token=abc&client_id=${rs.id}&client_secret=${rs.secret}`);
      expect(viaPost.status).toBe(401);
      expect(viaPost.body.error).toBe('invalid_client');
    });

    it('refuses credentials sent two ways, or a body client_id that differs from the header, as invalid_request', async () => {
      const twice = await h.request.post('/oauth/introspect').type('form').set('Authorization', basic(rs.id, rs.secret)).send(`token=abc&client_secret=${rs.secret}`);
      expect(twice.status).toBe(400);
      expect(twice.body.error).toBe('invalid_request');
      const mismatch = await h.request.post('/oauth/introspect').type('form').set('Authorization', basic(rs.id, rs.secret)).send('token=abc&client_id=someone-else');
      expect(mismatch.body.error).toBe('invalid_request');
      const rows = await h.auditRows('token.introspected');
      expect(rows.at(-1)).toMatchObject({ client_id: rs.id, reason: 'client_id_mismatch' });
    });

    it.each([
      ['a missing token', 'token_type_hint=access_token', 'application/x-www-form-urlencoded', 400],
      ['a repeated parameter', 'token=a&token=b', 'application/x-www-form-urlencoded', 400],
      ['a JSON body', '{"token":"a"}', 'application/json', 400],
      ['a body over 16 KiB', `token=${'a'.repeat(17_000)}`, 'application/x-www-form-urlencoded', 413],
      ['more than 100 parameters', `token=a&${Array.from({ length: 100 }, (_, i) => `p${i}=x`).join('&')}`, 'application/x-www-form-urlencoded', 400],
      ['a percent-escape that is not UTF-8', 'token=%E9', 'application/x-www-form-urlencoded', 400],
    ])('answers %s with invalid_request', async (_label, body, type, status) => {
      const res = await h.request.post('/oauth/introspect').set('Content-Type', type).set('Authorization', basic(rs.id, rs.secret)).send(body);
      expect(res.status).toBe(status);
      expect(res.body.error).toBe('invalid_request');
    });
  });

  it('reads the form as the token endpoint does: empty means omitted, unknown parameters ignored, ASCII under another label', async () => {
    const token = await issue();
    const res = await h.request
      .post('/oauth/introspect')
      .set('Content-Type', 'application/x-www-form-urlencoded; charset=ISO-8859-1')
      .set('Authorization', basic(rs.id, rs.secret))
      .send(`token=${token}&client_id=&client_secret=&x=1&x=2`);
    expect(res.status).toBe(200);
    expect(res.body.active).toBe(true);
  });

  it('attributes a refused call to the client_id in its body', async () => {
    const res = await h.request.post('/oauth/introspect').type('form').send('token=abc&client_id=body-named-caller');
    expect(res.status).toBe(401);
    expect((await h.auditRows('token.introspected')).at(-1)).toMatchObject({ client_id: 'body-named-caller', reason: 'secret_missing' });
  });

  it('judges the caller as it is once the token is inspected: a change answered meanwhile applies', async () => {
    const caller = await client({ client_name: 'changed-meanwhile', grant_types: [], introspection_audiences: [API] });
    const token = await issue();
    // The endpoint alone, with an inspection that lets a change through before it answers.
    const records = new ClientRecords(h.db, { ttlMs: 0, maxEntries: 10, clock: h.clock });
    const verified = new VerifiedCredentialCache({ ttlMs: 60_000, maxEntries: 10, clock: h.clock });
    const authenticate = createAuthenticator({ db: h.db, records, limits: h.limits, hasher: h.hasher, verified, lastUse: h.lastUse, clock: h.clock });
    const verify = createTokenVerifier({ keys: h.keys, issuer: ISSUER, clock: h.clock, leeway: h.config.clockLeeway, maxTokenAge: h.config.accessTokenMaxTtl, cacheSize: 0 });
    const inspectNow = createTokenInspector(h.db, verify);
    let meanwhile = (): Promise<unknown> => Promise.resolve();
    const inspect: typeof inspectNow = async (t) => {
      const inspection = await inspectNow(t);
      await meanwhile();
      return inspection;
    };
    const metrics = { introspection: () => {}, revocation: () => {} };
    const app = new Koa().use(introspectEndpoint({ db: h.db, authenticate, limits: h.limits, inspect, auditLog: h.service.auditLog, clock: h.clock, issuer: ISSUER, metrics }));
    const ask = () => supertest(app.callback()).post('/').type('form').set('Authorization', basic(caller.id, caller.secret)).send(`token=${token}`);

    expect((await ask()).body).toMatchObject({ active: true });
    meanwhile = () => updateClientSettings(h.service, caller.id, { introspection_audiences: [OTHER] });
    expect((await ask()).body).toEqual({ active: false });
    meanwhile = () => setClientEnabled(h.service, caller.id, false);
    const refused = await ask();
    expect({ status: refused.status, error: (refused.body as { error?: string }).error }).toEqual({ status: 401, error: 'invalid_client' });
  });

  it('audits every call: caller, jti, active and, internally, why not', async () => {
    const token = await issue();
    const jti = (JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as { jti: string }).jti;
    const mark = (await h.auditRows('token.introspected')).length;
    await introspect(token);
    await introspect(token, rsOther);
    await introspect('garbage');
    await h.request.post('/oauth/introspect').type('form').set('Authorization', basic(rs.id, 'wrong')).send(`token=${token}`);

    const rows = (await h.auditRows('token.introspected')).slice(mark);
    expect(rows).toMatchObject([
      { outcome: 'success', client_id: rs.id, jti, audience: API, reason: null, details: '{"active":true}' },
      { outcome: 'success', client_id: rsOther.id, jti: null, audience: null, reason: 'not_permitted', details: '{"active":false}' },
      { outcome: 'success', client_id: rs.id, jti: null, reason: 'malformed', details: '{"active":false}' },
      { outcome: 'failure', client_id: rs.id, error: 'invalid_client', reason: 'secret_mismatch' },
    ]);
    expect(JSON.stringify(rows) + JSON.stringify(h.logLines)).not.toContain(token);
  });

  it('is advertised in discovery with its auth methods', async () => {
    const { body } = await h.request.get('/.well-known/oauth-authorization-server');
    expect(body).toMatchObject({
      introspection_endpoint: `${ISSUER}/oauth/introspect`,
      introspection_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post'],
      revocation_endpoint: `${ISSUER}/oauth/revoke`,
      revocation_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post'],
    });
  });
});
