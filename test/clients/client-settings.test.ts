import { describe, expect, it } from 'vitest';

import { InvalidSettingError, validateNewClient, type ClientSettingsInput } from '../../src/clients/client-settings.js';

const limits = { maxAccessTokenTtl: 86_400 };
const fieldOf = (input: ClientSettingsInput): string | undefined => {
  try {
    validateNewClient(input, limits);
  } catch (err) {
    if (err instanceof InvalidSettingError) return err.field;
    throw err;
  }
  return undefined;
};

describe('validateNewClient', () => {
  it('fills RFC 7591-style defaults', () => {
    expect(validateNewClient({ client_name: ' billing ', scope: 'b a b', audience: ['https://api.example.com'] }, limits)).toEqual({
      clientId: undefined,
      clientName: 'billing',
      description: null,
      scopes: ['b', 'a'],
      defaultScopes: ['b', 'a'],
      audiences: ['https://api.example.com'],
      defaultAudience: 'https://api.example.com',
      introspectionAudiences: [],
      grantTypes: ['client_credentials'],
      authMethod: 'client_secret_basic',
      accessTokenTtl: null,
      tokenRateLimit: null,
      enabled: true,
    });
  });

  it('leaves the default audience unset when several are allowed', () => {
    expect(validateNewClient({ client_name: 'x', audience: ['https://a.example', 'https://b.example'] }, limits).defaultAudience).toBeNull();
  });

  const invalid: [string, ClientSettingsInput, string][] = [
    ['a missing name', { client_name: '  ' }, 'client_name'],
    ['a name with control characters', { client_name: 'a\nb' }, 'client_name'],
    ['a name with a lone surrogate', { client_name: 'x\ud800' }, 'client_name'],
    ['a description with a lone surrogate', { client_name: 'x', description: 'd\udc00' }, 'description'],
    ['a client_id with a colon', { client_name: 'x', client_id: 'a:b' }, 'client_id'],
    ['a too short client_id', { client_name: 'x', client_id: 'ab' }, 'client_id'],
    ['a client_id shaped like a secret', { client_name: 'x', client_id: 'tsec_0123456789abcdef_x' }, 'client_id'],
    ['a client_id shaped like a JWT', { client_name: 'x', client_id: 'eyJhb.cd.ef' }, 'client_id'],
    ['an audience with spaces', { client_name: 'x', audience: [' https://api.example.com/a b '] }, 'audience'],
    ['an audience with a quote', { client_name: 'x', audience: ['https://api.example.com/a"b'] }, 'audience'],
    ['an audience with angle brackets', { client_name: 'x', audience: ['https://api.example.com/<x>'] }, 'audience'],
    ['an audience with non-ASCII', { client_name: 'x', audience: ['https://api.example.com/ü'] }, 'audience'],
    ['a scope token with a quote', { client_name: 'x', scope: 'read "write' }, 'scope'],
    ['a scope token with a backslash', { client_name: 'x', scope: 'a\\b' }, 'scope'],
    ['a default scope outside scope', { client_name: 'x', scope: 'a', default_scope: 'b' }, 'default_scope'],
    ['a relative audience', { client_name: 'x', audience: ['api'] }, 'audience'],
    ['an audience with a fragment', { client_name: 'x', audience: ['https://a.example#f'] }, 'audience'],
    ['a default audience not allowed', { client_name: 'x', audience: ['https://a.example'], default_audience: 'https://b.example' }, 'default_audience'],
    ['a relative introspection audience', { client_name: 'x', introspection_audiences: ['api'] }, 'introspection_audiences'],
    ['"*" mixed with audiences', { client_name: 'x', introspection_audiences: ['*', 'https://a.example'] }, 'introspection_audiences'],
    ['an unsupported grant type', { client_name: 'x', grant_types: ['password'] }, 'grant_types'],
    ['an unknown auth method', { client_name: 'x', token_endpoint_auth_method: 'none' }, 'token_endpoint_auth_method'],
    ['a lifetime under a minute', { client_name: 'x', access_token_ttl: 59 }, 'access_token_ttl'],
    ['a lifetime above ACCESS_TOKEN_MAX_TTL', { client_name: 'x', access_token_ttl: 86_401 }, 'access_token_ttl'],
    ['a fractional lifetime', { client_name: 'x', access_token_ttl: 90.5 }, 'access_token_ttl'],
  ];
  it.each(invalid)('rejects %s, naming the field', (_label, input, field) => {
    expect(fieldOf(input)).toBe(field);
  });
});
