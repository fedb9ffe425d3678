import { decodeJwt } from 'jose';
import { sql } from 'kysely';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { basic, startHarness, type Harness } from '../support/harness.js';

const API = 'https://api.example.com';

let h: Harness;
let id: string;
let secret: string;

beforeEach(async () => {
  h = await startHarness();
  ({ client: { clientId: id }, secret } = await h.createClient({ client_name: 'audited', scope: 'read:data write:logs', audience: [API] }));
});
afterEach(() => h.close());

const token = (form: string, auth?: string) => {
  const req = h.request.post('/oauth/token').type('form').set('User-Agent', 'audit-test/1.0').set('X-Request-Id', 'req-123');
  if (auth) void req.set('Authorization', auth);
  return req.send(form);
};

describe('audit log of the token endpoint', () => {
  it('commits one row per issued token, naming the token by jti and expiry only', async () => {
    const res = await token('grant_type=client_credentials&scope=read:data', basic(id, secret));
    expect(res.status).toBe(200);
    const payload = decodeJwt(res.body.access_token as string);

    const rows = await h.auditRows('token.');
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      type: 'token.issued',
      outcome: 'success',
      client_id: id,
      remote_addr: expect.stringMatching(/127\.0\.0\.1/),
      user_agent: 'audit-test/1.0',
      request_id: 'req-123',
      requested_scope: 'read:data',
      granted_scope: 'read:data',
      audience: API,
      jti: payload.jti,
      token_expires_at: payload.exp,
      error: null,
      reason: null,
    });
  });

  it.each<[string, string, () => string | undefined, string, string, () => string | null]>([
    ['unknown client', 'grant_type=client_credentials', () => basic('ghost', secret), 'invalid_client', 'unknown_client', () => 'ghost'],
    ['wrong secret', 'grant_type=client_credentials', () => basic(id, 'tsec_0123456789abcdef_' + 'x'.repeat(43)), 'invalid_client', 'secret_mismatch', () => id],
    ['scope not allowed', 'grant_type=client_credentials&scope=admin', () => basic(id, secret), 'invalid_scope', 'scope_not_allowed', () => id],
    ['audience not allowed', 'grant_type=client_credentials&audience=https://x.example.com', () => basic(id, secret), 'invalid_target', 'audience_not_allowed', () => id],
    ['unsupported grant', 'grant_type=password', () => basic(id, secret), 'unsupported_grant_type', 'grant_type_unsupported', () => id],
    ['no grant type', 'scope=read:data', () => basic(id, secret), 'invalid_request', 'grant_type_missing', () => id],
    ['unsupported grant, credentials in the body', 'grant_type=password&client_id=ghost-post&client_secret=x', () => undefined, 'unsupported_grant_type', 'grant_type_unsupported', () => 'ghost-post'],
    ['a body secret with no client_id', 'grant_type=client_credentials&client_secret=x', () => undefined, 'invalid_client', 'credentials_missing', () => null],
    ['no credentials', 'grant_type=client_credentials', () => undefined, 'invalid_client', 'credentials_missing', () => null],
    ['a malformed Basic header', 'grant_type=client_credentials', () => 'Basic %%%', 'invalid_client', 'credentials_malformed', () => null],
  ])('commits one failure row for %s with the RFC code, the internal reason and the client_id presented', async (_label, form, auth, error, reason, clientId) => {
    const res = await token(form, auth());
    expect(res.body.error).toBe(error);
    const rows = await h.auditRows('token.');
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ type: 'token.failed', outcome: 'failure', error, jti: null, granted_scope: null, request_id: 'req-123' });
    expect({ reason: rows[0]!.reason, client_id: rows[0]!.client_id }).toEqual({ reason, client_id: clientId() });
  });

  it('records why a correct secret was refused: expired, disabled, wrong method', async () => {
    const rotated = await h.createClient({ client_name: 'rotated', audience: [API] });
    await h.rotateSecret(rotated.client.clientId, 0);
    await token('grant_type=client_credentials', basic(rotated.client.clientId, rotated.secret));

    const disabled = await h.createClient({ client_name: 'disabled', audience: [API], enabled: false });
    await token('grant_type=client_credentials', basic(disabled.client.clientId, disabled.secret));

    await token(`grant_type=client_credentials&client_id=${id}&client_secret=${secret}`);

    expect((await h.auditRows('token.')).map((r) => r.reason)).toEqual(['secret_expired', 'client_disabled', 'auth_method_not_allowed']);
  });

  it('records the scope as requested, not as granted by default', async () => {
    await token('grant_type=client_credentials', basic(id, secret));
    expect(await h.auditRows('token.')).toMatchObject([{ requested_scope: null, granted_scope: 'read:data write:logs' }]);
  });

  it('masks a secret sent as the client_id, and control characters', async () => {
    await token(`grant_type=client_credentials&client_id=${secret}&client_secret=${id}`);
    await token(`grant_type=client_credentials&client_id=evil%0A%7B%22forged%22%3A1%7D&client_secret=${secret}`, undefined);
    const rows = await h.auditRows('token.');
    expect(rows.map((r) => r.client_id)).toEqual(['tsec_[redacted]', 'evil\uFFFD{"forged":1}']);
    expect(JSON.stringify(rows) + JSON.stringify(h.logLines)).not.toContain(secret);
  });

  it('masks a token sent in the request path in the access log', async () => {
    const issued = await token('grant_type=client_credentials', basic(id, secret));
    await h.request.post(`/oauth/introspect/${issued.body.access_token as string}`);
    expect(JSON.stringify(h.logLines)).not.toContain(issued.body.access_token);
  });

  it('writes the same event as one JSON log line', async () => {
    await token('grant_type=client_credentials', basic(id, secret));
    const [row] = await h.auditRows('token.');
    const line = h.logLines.find((l) => l.msg === 'token.issued');
    expect(line?.audit).toEqual(row);
  });

  it('never stores or logs a secret, a token, a hash or an Authorization header', async () => {
    const issued = await token('grant_type=client_credentials', basic(id, secret));
    await token('grant_type=client_credentials', basic(id, `${secret}x`));
    await token(`grant_type=client_credentials&client_id=${id}&client_secret=${secret}`);
    const hashes = (await h.db.selectFrom('client_secrets').select('hash').execute()).map((r) => r.hash);
    const sensitive = [secret, issued.body.access_token as string, basic(id, secret).slice(6), ...hashes];

    const everything = JSON.stringify(await h.auditRows()) + JSON.stringify(h.logLines);
    for (const value of sensitive) expect(everything).not.toContain(value);
  });

  it('answers an internal failure with a generic server_error, audited and logged with its cause', async () => {
    await h.db.updateTable('clients').set({ audience: 'not json' }).where('client_id', '=', id).execute();
    const res = await token('grant_type=client_credentials', basic(id, secret));
    expect(res.status).toBe(500);
    expect(res.body).toEqual({ error: 'server_error', error_description: 'the request could not be completed' });
    expect(await h.auditRows('token.')).toMatchObject([{ outcome: 'failure', error: 'server_error', reason: 'server_error' }]);
    const logged = h.logLines.find((l) => l.msg === 'token endpoint failed') as { level: number; err: { message: string } } | undefined;
    expect(logged?.level).toBe(50);
    expect(logged?.err.message).toMatch(/JSON/);
  });

  it('withholds the token and answers server_error when the audit row cannot be committed', async () => {
    await sql`DROP TABLE audit_events`.execute(h.db);
    const res = await token('grant_type=client_credentials', basic(id, secret));
    expect(res.status).toBe(500);
    expect(res.body).toEqual({ error: 'server_error', error_description: 'the request could not be completed' });
    expect(res.text).not.toContain('eyJ');
    expect(res.headers['cache-control']).toBe('no-store');
  });
});
