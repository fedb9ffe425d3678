import { createLocalJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';

import { adminClientSettings } from '../../src/admin/bootstrap.js';
import type * as MintModule from '../../src/provider/mint-token.js';
import { ISSUER, basic, startHarness, type Harness } from '../support/harness.js';
import { expectConforms } from '../support/openapi.js';

/** When set, runs once a token has been signed, before the endpoint sees it. */
const afterSigning = vi.hoisted(() => ({ hook: undefined as (() => Promise<unknown>) | undefined }));
vi.mock('../../src/provider/mint-token.js', async (importOriginal) => {
  const actual = await importOriginal<typeof MintModule>();
  return {
    ...actual,
    createTokenMinter: (options: Parameters<typeof actual.createTokenMinter>[0]) => {
      const minter = actual.createTokenMinter(options);
      return {
        kid: minter.kid,
        mint: async (...args: Parameters<typeof minter.mint>) => {
          const token = await minter.mint(...args);
          const hook = afterSigning.hook;
          afterSigning.hook = undefined;
          await hook?.();
          return token;
        },
      };
    },
  };
});

const API = 'https://api.example.com';
let h: Harness;
let workload: { id: string; secret: string };
let rs: { id: string; secret: string };
let adminCredentials: string;

beforeAll(async () => {
  h = await startHarness({ JWKS_MAX_AGE: '60', ACCESS_TOKEN_MAX_TTL: '7200' });
  // Clients exist since before the rotations below, so nothing here predates its client.
  h.clock.advance(-3600);
  const w = await h.createClient({ client_name: 'w', audience: [API] });
  const r = await h.createClient({ client_name: 'rs', grant_types: [], introspection_audiences: ['*'] });
  const a = await h.createClient({ client_name: 'admin', ...adminClientSettings(ISSUER) });
  h.clock.sync();
  workload = { id: w.client.clientId, secret: w.secret };
  rs = { id: r.client.clientId, secret: r.secret };
  adminCredentials = basic(a.client.clientId, a.secret);
});
afterAll(() => h.close());
afterEach(() => h.clock.sync());

/** A fresh admin token: one from before a rotation dies with its key, as it should. */
const adminAuth = async () =>
  `Bearer ${(await h.request.post('/oauth/token').type('form').set('Authorization', adminCredentials).send('grant_type=client_credentials')).body.access_token as string}`;
const issue = async () =>
  (await h.request.post('/oauth/token').type('form').set('Authorization', basic(workload.id, workload.secret)).send('grant_type=client_credentials')).body
    .access_token as string;
const active = async (token: string) =>
  (await h.request.post('/oauth/introspect').type('form').set('Authorization', basic(rs.id, rs.secret)).send(`token=${token}`)).body.active as boolean;
const jwks = async () => (await h.request.get('/.well-known/jwks.json')).body as { keys: { kid: string }[] };
/** A token request during whose argon2 verify (a cache miss) `meanwhile` runs to completion. */
const requestWhileVerifying = async (clientId: string, secret: string, meanwhile: () => Promise<unknown>) => {
  const hasher = h.hasher;
  const verify = (hash: string, presented: string) => Object.getPrototypeOf(hasher).verify.call(hasher, hash, presented) as Promise<boolean>;
  hasher.verify = async (hash, presented) => {
    await meanwhile();
    return verify(hash, presented);
  };
  try {
    return await h.request.post('/oauth/token').type('form').set('Authorization', basic(clientId, secret)).send('grant_type=client_credentials');
  } finally {
    delete (hasher as { verify?: unknown }).verify;
  }
};
const verifyOffline = async (token: string) =>
  jwtVerify(token, createLocalJWKSet(await jwks()), { issuer: ISSUER, typ: 'at+jwt', algorithms: ['RS256'], currentDate: new Date(h.clock.now()) });

describe('rotation seen by gateways and resource servers', () => {
  it('a token signed before rotation verifies with the JWKS fetched after it, until retention ends', async () => {
    const before = await issue();
    const oldKid = decodeProtectedHeader(before).kid!;
    const etagBefore = (await h.request.get('/.well-known/jwks.json')).headers.etag!;

    const rotated = await h.request.post('/admin/keys/rotate').set('Authorization', await adminAuth()).send({});
    expect(rotated.status).toBe(201);
    expectConforms('POST', '/admin/keys/rotate', 201, rotated.body);
    const newKid = rotated.body.kid as string;

    // Published at once, with a new ETag, but not signing yet.
    expect((await jwks()).keys.map((k) => k.kid).sort()).toEqual([oldKid, newKid].sort());
    expect((await h.request.get('/.well-known/jwks.json').set('If-None-Match', etagBefore)).status).toBe(200);
    expect(decodeProtectedHeader(await issue()).kid).toBe(oldKid);

    h.clock.advance(60 + h.config.keyReloadInterval);
    await h.keys.tick();
    const after = await issue();
    expect(decodeProtectedHeader(after).kid).toBe(newKid);

    await verifyOffline(before);
    await verifyOffline(after);
    expect(await active(before)).toBe(true);

    h.clock.advance(7200 + h.config.clockLeeway + h.config.keyReloadInterval);
    await h.keys.tick();
    expect((await jwks()).keys.map((k) => k.kid)).toEqual([newKid]);
    await expect(verifyOffline(before)).rejects.toThrow();
    expect(await active(before)).toBe(false);
  });

  it('answers a second rotation request while one is pending with 200 and the same key', async () => {
    const first = await h.request.post('/admin/keys/rotate').set('Authorization', await adminAuth());
    const second = await h.request.post('/admin/keys/rotate').set('Authorization', await adminAuth());
    expect(first.status).toBe(201);
    expect(second.status).toBe(200);
    expectConforms('POST', '/admin/keys/rotate', 200, second.body);
    expect(second.body).toMatchObject({ kid: first.body.kid, pending_rotation: true, state: 'next' });
  });

  it('revokes a compromised signing key: gone from the JWKS, its tokens inactive, a replacement signs at once', async () => {
    const token = await issue();
    const kid = decodeProtectedHeader(token).kid!;
    const res = await h.request.post(`/admin/keys/${kid}/revoke`).set('Authorization', await adminAuth());
    expect(res.status).toBe(200);
    expectConforms('POST', '/admin/keys/{kid}/revoke', 200, res.body);
    expect(res.body).toMatchObject({ kid, state: 'revoked' });

    expect((await jwks()).keys.map((k) => k.kid)).not.toContain(kid);
    expect(await active(token)).toBe(false);
    const next = await issue();
    expect(decodeProtectedHeader(next).kid).not.toBe(kid);
    expect(await active(next)).toBe(true);

    const unknown = await h.request.post('/admin/keys/nope/revoke').set('Authorization', await adminAuth());
    expect(unknown.status).toBe(404);

    const audited = (await h.auditRows('key.')).map((r) => [r.type, (JSON.parse(r.details!) as { kid: string }).kid]);
    expect(audited).toContainEqual(['key.revoked', kid]);
  });

  it('signs with the key active when it signs, when the key changes while the request waits', async () => {
    const { client, secret } = await h.createClient({ client_name: 'slow', audience: [API] });
    const before = h.keystore.active.kid;
    // The rotation lands while this request's secret is being verified (cache miss: argon2 runs).
    const res = await requestWhileVerifying(client.clientId, secret, () => h.keys.rotate({ now: true, actor: 'test' }));
    expect(res.status).toBe(200);
    expect(decodeProtectedHeader(res.body.access_token as string).kid).not.toBe(before);
    expect(decodeProtectedHeader(res.body.access_token as string).kid).toBe(h.keys.current.active.kid);
    expect(await active(res.body.access_token as string)).toBe(true);
  });

  it('signs with the replacement when the key is revoked while the request waits, spending one rate-limit token', async () => {
    // One token a minute: a request that spent it on a token it never got would leave the retry a 429.
    const { client, secret } = await h.createClient({ client_name: 'revoked-while-waiting', audience: [API], token_rate_limit: 1 });
    const revoked = h.keys.current.active.kid;
    const res = await requestWhileVerifying(client.clientId, secret, () => h.keys.revoke(revoked, 'test'));
    expect(res.status).toBe(200);
    expect(decodeProtectedHeader(res.body.access_token as string).kid).not.toBe(revoked);
    await expect(verifyOffline(res.body.access_token as string)).resolves.toBeDefined();
  });

  it('withholds a token whose key is revoked while it is being signed, and the retry signs with the replacement', async () => {
    const { client, secret } = await h.createClient({ client_name: 'revoked-meanwhile', audience: [API] });
    const revoked = h.keys.current.active.kid;
    afterSigning.hook = () => h.keys.revoke(revoked, 'test');
    const res = await h.request.post('/oauth/token').type('form').set('Authorization', basic(client.clientId, secret)).send('grant_type=client_credentials');
    expect(res.status).toBe(503);
    expect(res.headers['retry-after']).toBe('1');
    expect(res.body).toEqual({ error: 'temporarily_unavailable', error_description: 'the signing key changed; retry shortly' });
    const row = (await h.auditRows('token.')).at(-1)!;
    expect(row).toMatchObject({ type: 'token.failed', client_id: client.clientId, error: 'temporarily_unavailable', reason: 'signing_key_revoked', jti: null });

    const retried = await h.request.post('/oauth/token').type('form').set('Authorization', basic(client.clientId, secret)).send('grant_type=client_credentials');
    expect(retried.status).toBe(200);
    expect(decodeProtectedHeader(retried.body.access_token as string).kid).not.toBe(revoked);
    await expect(verifyOffline(retried.body.access_token as string)).resolves.toBeDefined();
  });

  it('rotates at once with {"now": true}', async () => {
    const res = await h.request.post('/admin/keys/rotate').set('Authorization', await adminAuth()).send({ now: true });
    expect(res.status).toBe(201);
    expect(res.body.state).toBe('active');
    expect(decodeProtectedHeader(await issue()).kid).toBe(res.body.kid);
    const bad = await h.request.post('/admin/keys/rotate').set('Authorization', await adminAuth()).send({ now: 'yes' });
    expect(bad.status).toBe(400);
    expect(bad.body.field).toBe('now');
  });
});
