import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { ISSUER, startHarness, type Harness } from '../support/harness.js';

let h: Harness;
beforeAll(async () => {
  h = await startHarness({ JWKS_MAX_AGE: '600' });
});
afterAll(() => h.close());

describe('authorization server metadata (RFC 8414)', () => {
  it.each(['/.well-known/oauth-authorization-server', '/.well-known/openid-configuration'])('is served at %s', async (path) => {
    const res = await h.request.get(path);
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(res.body).toEqual({
      issuer: ISSUER,
      token_endpoint: `${ISSUER}/oauth/token`,
      jwks_uri: `${ISSUER}/.well-known/jwks.json`,
      grant_types_supported: ['client_credentials'],
      token_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post'],
      response_types_supported: [],
      introspection_endpoint: `${ISSUER}/oauth/introspect`,
      introspection_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post'],
      revocation_endpoint: `${ISSUER}/oauth/revoke`,
      revocation_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post'],
    });
  });
});

describe('JWKS (RFC 7517)', () => {
  it('serves the public signing key, cacheable for JWKS_MAX_AGE, with an ETag', async () => {
    const res = await h.request.get('/.well-known/jwks.json');
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^application\/jwk-set\+json/);
    expect(res.headers['cache-control']).toBe('public, max-age=600');
    expect(res.headers.etag).toMatch(/^"[A-Za-z0-9_-]+"$/);
    expect(res.body.keys).toEqual([h.keystore.active.publicJwk]);
    expect(res.text).not.toMatch(/"(d|p|q|dp|dq|qi)"/);
  });

  it('answers a conditional GET with 304 and no body', async () => {
    const { headers } = await h.request.get('/.well-known/jwks.json');
    const res = await h.request.get('/.well-known/jwks.json').set('If-None-Match', headers.etag!);
    expect(res.status).toBe(304);
    expect(res.text).toBe('');
    const stale = await h.request.get('/.well-known/jwks.json').set('If-None-Match', '"other"');
    expect(stale.status).toBe(200);
  });
});
