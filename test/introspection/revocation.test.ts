import { sql } from 'kysely';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';

import { setClientEnabled } from '../../src/clients/client.service.js';
import { epochSeconds } from '../../src/clock.js';
import { REVOCATION_MARGIN, pruneRevokedTokens } from '../../src/introspection/revocation.repository.js';
import { basic, mint, startHarness, type Harness } from '../support/harness.js';

const API = 'https://api.example.com';
const OTHER = 'https://other.example.com';

let h: Harness;
let workload: { id: string; secret: string };
let stranger: { id: string; secret: string };
let rs: { id: string; secret: string };
let rsOther: { id: string; secret: string };

const client = async (input: Parameters<Harness['createClient']>[0]) => {
  const { client: c, secret } = await h.createClient(input);
  return { id: c.clientId, secret };
};

beforeAll(async () => {
  h = await startHarness();
  workload = await client({ client_name: 'workload', scope: 'read:data', audience: [API] });
  stranger = await client({ client_name: 'stranger', audience: [API] });
  rs = await client({ client_name: 'api', grant_types: [], introspection_audiences: [API] });
  rsOther = await client({ client_name: 'other-api', grant_types: [], introspection_audiences: [OTHER] });
});
afterAll(() => h.close());
beforeEach(() => h.clock.sync());

const issue = async () => {
  const res = await h.request.post('/oauth/token').type('form').set('Authorization', basic(workload.id, workload.secret)).send('grant_type=client_credentials');
  return res.body.access_token as string;
};
const revoke = (token: string, caller = workload, extra = '') =>
  h.request.post('/oauth/revoke').type('form').set('Authorization', basic(caller.id, caller.secret)).send(`token=${encodeURIComponent(token)}${extra}`);
const active = async (token: string) =>
  (await h.request.post('/oauth/introspect').type('form').set('Authorization', basic(rs.id, rs.secret)).send(`token=${token}`)).body.active as boolean;

describe('POST /oauth/revoke (RFC 7009)', () => {
  it('lets the client the token was issued to revoke it: 200, empty body, inactive from then on', async () => {
    const token = await issue();
    expect(await active(token)).toBe(true);
    const res = await revoke(token, workload, '&token_type_hint=access_token');
    expect(res.status).toBe(200);
    expect(res.text).toBe('');
    expect(res.headers['cache-control']).toBe('no-store');
    expect(await active(token)).toBe(false);
  });

  it('lets a resource server with introspection rights over the audience revoke it', async () => {
    const token = await issue();
    expect((await revoke(token, rs)).status).toBe(200);
    expect(await active(token)).toBe(false);
  });

  it('refuses other clients with unauthorized_client, and the token stays active', async () => {
    const token = await issue();
    for (const caller of [stranger, rsOther]) {
      const res = await revoke(token, caller);
      expect(res.status).toBe(400);
      expect(res.body).toEqual({ error: 'unauthorized_client', error_description: 'the client may not revoke this token' });
    }
    expect(await active(token)).toBe(true);
  });

  it.each([
    ['an unknown token', () => Promise.resolve('not-a-token')],
    ['an expired token', () => mint(h, { sub: workload.id, client_id: workload.id, aud: API, iat: epochSeconds(h.clock) - 7200, exp: epochSeconds(h.clock) - 3600 })],
    ['a token signed by someone else', () => mint(h, { sub: workload.id, client_id: workload.id, aud: API }, { header: { kid: 'foreign' } })],
  ])('answers %s with the same empty 200 (no oracle)', async (_label, make) => {
    const res = await revoke(await make());
    expect(res.status).toBe(200);
    expect(res.text).toBe('');
  });

  it('answers a second revocation of the same token with 200 too', async () => {
    const token = await issue();
    expect((await revoke(token)).status).toBe(200);
    expect((await revoke(token)).status).toBe(200);
    const { jti } = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as { jti: string };
    expect(await h.db.selectFrom('revoked_tokens').selectAll().where('jti', '=', jti).execute()).toHaveLength(1);
  });

  it('records a revocation while the token\'s client is disabled', async () => {
    const paused = await client({ client_name: 'paused', audience: [API] });
    const res = await h.request.post('/oauth/token').type('form').set('Authorization', basic(paused.id, paused.secret)).send('grant_type=client_credentials');
    const token = res.body.access_token as string;
    const { jti } = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as { jti: string };
    await setClientEnabled(h.service, paused.id, false);
    expect((await revoke(token, rs)).status).toBe(200);
    await setClientEnabled(h.service, paused.id, true);
    expect(await active(token)).toBe(false);
    expect(await h.db.selectFrom('revoked_tokens').select('jti').where('jti', '=', jti).execute()).toHaveLength(1);
  });

  it('lets a gateway with rights over every audience revoke, with no argon2 once its secret is verified', async () => {
    const gateway = await client({ client_name: 'gateway', grant_types: [], introspection_audiences: ['*'] });
    await revoke('warm-up', gateway);
    const token = await issue();
    h.hasher.reset();
    expect((await revoke(token, gateway)).status).toBe(200);
    expect(h.hasher).toMatchObject({ verifies: 0, decoys: 0 });
    expect(await active(token)).toBe(false);
  });

  it.each([
    ['no credentials', undefined, 401, 'invalid_client'],
    ['a wrong secret', () => basic(workload.id, 'nope'), 401, 'invalid_client'],
    ['an unknown client', () => basic('ghost', workload.secret), 401, 'invalid_client'],
    ['a malformed Basic header', () => 'Basic ???', 401, 'invalid_client'],
  ])('refuses a caller with %s', async (_label, auth, status, error) => {
    const req = h.request.post('/oauth/revoke').type('form');
    if (auth) void req.set('Authorization', auth());
    const res = await req.send('token=abc');
    expect(res.status).toBe(status);
    expect(res.body.error).toBe(error);
    expect(res.headers['www-authenticate']).toMatch(/^Basic realm=/);
  });

  it('requires the token parameter', async () => {
    const res = await h.request.post('/oauth/revoke').type('form').set('Authorization', basic(workload.id, workload.secret)).send('token_type_hint=access_token');
    expect(res.status).toBe(400);
    expect(res.body.error).toBe('invalid_request');
  });

  it('audits every revocation with the caller, the jti and whether anything changed', async () => {
    const token = await issue();
    const { jti, exp } = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as { jti: string; exp: number };
    const mark = (await h.auditRows('token.revoked')).length;
    await revoke(token);
    await revoke(token);
    await revoke(token, stranger);
    const rows = (await h.auditRows('token.revoked')).slice(mark);
    expect(rows).toMatchObject([
      { outcome: 'success', client_id: workload.id, jti, audience: API, token_expires_at: exp, reason: null, details: '{"revoked":true}' },
      { outcome: 'success', client_id: workload.id, jti, reason: 'already_revoked', details: '{"revoked":false}' },
      { outcome: 'failure', client_id: stranger.id, error: 'unauthorized_client', reason: 'not_permitted' },
    ]);
    expect(JSON.stringify(rows) + JSON.stringify(h.logLines)).not.toContain(token);
  });
});

describe('an internal failure at introspection or revocation', () => {
  it('is answered 500 server_error and still audited', async () => {
    const token = await issue();
    const marks = { introspected: (await h.auditRows('token.introspected')).length, revoked: (await h.auditRows('token.revoked')).length };
    // Both endpoints read the revocation list: without it, every call fails inside.
    await sql`alter table revoked_tokens rename to revoked_tokens_gone`.execute(h.db);
    try {
      const introspected = await h.request.post('/oauth/introspect').type('form').set('Authorization', basic(rs.id, rs.secret)).send(`token=${token}`);
      const revoked = await revoke(token);
      for (const res of [introspected, revoked]) {
        expect(res.status).toBe(500);
        expect(res.body).toMatchObject({ error: 'server_error' });
      }
    } finally {
      await sql`alter table revoked_tokens_gone rename to revoked_tokens`.execute(h.db);
    }
    const failure = { outcome: 'failure', error: 'server_error', reason: 'server_error' };
    expect((await h.auditRows('token.introspected')).slice(marks.introspected)).toMatchObject([{ ...failure, client_id: rs.id }]);
    expect((await h.auditRows('token.revoked')).slice(marks.revoked)).toMatchObject([{ ...failure, client_id: workload.id }]);
  });
});

describe('pruning the revocation list', () => {
  it('keeps each entry until an hour after its token has expired, leeway included', async () => {
    h.clock.freeze();
    const now = epochSeconds(h.clock);
    const token = await mint(h, { sub: workload.id, client_id: workload.id, aud: API, iat: now, exp: now + 100 });
    await revoke(token);
    const { jti } = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as { jti: string };
    const has = async () => (await h.db.selectFrom('revoked_tokens').select('jti').where('jti', '=', jti).execute()).length === 1;

    const kept = now + 100 + h.config.clockLeeway + REVOCATION_MARGIN;
    expect(await pruneRevokedTokens(h.db, kept, h.config.clockLeeway)).toBe(0);
    expect(await has()).toBe(true);
    // Pruned at expiry + leeway by a clock ahead of this one, the token would be active here again.
    expect(await pruneRevokedTokens(h.db, now + 101 + h.config.clockLeeway, h.config.clockLeeway)).toBe(0);
    expect(await active(token)).toBe(false);
    await pruneRevokedTokens(h.db, kept + 1, h.config.clockLeeway);
    expect(await has()).toBe(false);
  });
});
