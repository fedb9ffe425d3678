import { describe, expect, it } from 'vitest';

import type { Client } from '../../src/clients/client.js';
import { parseTokenRequest } from '../../src/token/parse-request.js';
import { decide } from '../../src/token/policy.js';

const client: Client = {
  clientId: 'c1',
  clientName: 'c1',
  description: null,
  scopes: ['read', 'write'],
  defaultScopes: ['read'],
  audiences: ['https://a.example', 'https://b.example'],
  defaultAudience: 'https://a.example',
  introspectionAudiences: [],
  tokensRevokedBefore: null,
  grantTypes: ['client_credentials'],
  authMethod: 'client_secret_basic',
  accessTokenTtl: null,
  tokenRateLimit: null,
  enabled: true,
  createdAt: 0,
  updatedAt: 0,
};
const limits = { defaultTtl: 3600, maxTtl: 7200 };
type Params = Record<string, string>;
const request = (params: Params) => parseTokenRequest(new Map(Object.entries(params)));

describe('policy.decide', () => {
  const granted: [string, Partial<Client>, Params, { audience: string; scopes: string[]; ttl: number }][] = [
    ['defaults when nothing is requested', {}, {}, { audience: 'https://a.example', scopes: ['read'], ttl: 3600 }],
    ['requested scopes, deduplicated', {}, { scope: 'write read write' }, { audience: 'https://a.example', scopes: ['write', 'read'], ttl: 3600 }],
    ['resource names the audience', {}, { resource: 'https://b.example' }, { audience: 'https://b.example', scopes: ['read'], ttl: 3600 }],
    ['audience names the audience', {}, { audience: 'https://b.example' }, { audience: 'https://b.example', scopes: ['read'], ttl: 3600 }],
    ['no default scope: nothing granted', { defaultScopes: [] }, {}, { audience: 'https://a.example', scopes: [], ttl: 3600 }],
    ['client lifetime', { accessTokenTtl: 600 }, {}, { audience: 'https://a.example', scopes: ['read'], ttl: 600 }],
    ['lifetime capped by the server maximum', { accessTokenTtl: 86_400 }, {}, { audience: 'https://a.example', scopes: ['read'], ttl: 7200 }],
  ];
  it.each(granted)('grants %s', (_label, overrides, params, expected) => {
    expect(decide({ ...client, ...overrides }, request(params), limits)).toEqual({ ok: true, grant: expected });
  });

  const denied: [string, Partial<Client>, Params, string, string][] = [
    ['a grant type the client lacks', { grantTypes: [] }, {}, 'unauthorized_client', 'grant_type_not_allowed'],
    ['a scope outside the allowed set', {}, { scope: 'read admin' }, 'invalid_scope', 'scope_not_allowed'],
    ['a default scope no longer allowed', { scopes: ['write'] }, {}, 'invalid_scope', 'scope_not_allowed'],
    ['an audience outside the allowed set', {}, { resource: 'https://c.example' }, 'invalid_target', 'audience_not_allowed'],
    ['no audience and no default', { defaultAudience: null }, {}, 'invalid_target', 'audience_missing'],
  ];
  it.each(denied)('denies %s', (_label, overrides, params, error, reason) => {
    expect(decide({ ...client, ...overrides }, request(params), limits)).toMatchObject({ ok: false, error, reason });
  });
});
