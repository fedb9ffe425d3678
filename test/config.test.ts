import { describe, expect, it } from 'vitest';

import { ConfigError, loadConfig } from '../src/config.js';

const problemsOf = (env: Record<string, string>): string[] => {
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return [...err.problems];
    throw err;
  }
  return [];
};

describe('loadConfig', () => {
  it('defaults to a local SQLite file, keys/, port 3000 and one-hour tokens', () => {
    expect(loadConfig({})).toMatchObject({
      port: 3000,
      host: '127.0.0.1',
      issuer: 'http://localhost:3000',
      databasePath: 'data/tessera.db',
      keysDir: 'keys',
      accessTokenTtl: 3600,
      accessTokenMaxTtl: 86_400,
      jwksMaxAge: 300,
      argon2: { memoryCost: 19_456, timeCost: 2, parallelism: 1 },
    });
  });

  it('reads every documented variable', () => {
    const config = loadConfig({
      PORT: '8443',
      HOST: '0.0.0.0',
      ISSUER: 'https://auth.example.com/',
      DATABASE_URL: '/var/lib/tessera/tessera.db',
      KEYS_DIR: '/etc/tessera/keys',
      ACCESS_TOKEN_TTL: '600',
      ACCESS_TOKEN_MAX_TTL: '1200',
      JWKS_MAX_AGE: '900',
      LOG_LEVEL: 'warn',
      TRUST_PROXY: 'true',
    });
    expect(config).toMatchObject({
      port: 8443,
      host: '0.0.0.0',
      issuer: 'https://auth.example.com',
      databasePath: '/var/lib/tessera/tessera.db',
      keysDir: '/etc/tessera/keys',
      accessTokenTtl: 600,
      accessTokenMaxTtl: 1200,
      jwksMaxAge: 900,
      logLevel: 'warn',
      trustProxy: true,
    });
    expect(Object.isFrozen(config)).toBe(true);
  });

  it('reports every bad variable at once, by name', () => {
    const problems = problemsOf({ PORT: 'eighty', ACCESS_TOKEN_TTL: '10', LOG_LEVEL: 'loud', TRUST_PROXY: 'maybe' });
    expect(problems).toHaveLength(4);
    for (const name of ['PORT', 'ACCESS_TOKEN_TTL', 'LOG_LEVEL', 'TRUST_PROXY']) expect(problems.join('\n')).toContain(name);
  });

  it('refuses a default lifetime above the maximum', () => {
    expect(problemsOf({ ACCESS_TOKEN_TTL: '7200', ACCESS_TOKEN_MAX_TTL: '3600' })).toEqual([
      'ACCESS_TOKEN_TTL (7200) must not exceed ACCESS_TOKEN_MAX_TTL (3600)',
    ]);
  });

  it.each([
    ['not a URL', 'auth.example.com'],
    ['plain http off loopback', 'http://auth.example.com'],
    ['a query', 'https://auth.example.com?x=1'],
    ['a fragment', 'https://auth.example.com#x'],
    ['credentials', 'https://user:pw@auth.example.com'],
    ['a path', 'https://example.com/tessera'],
  ])('refuses an ISSUER with %s (RFC 8414 §2)', (_label, issuer) => {
    expect(problemsOf({ ISSUER: issuer }).join()).toContain('ISSUER');
  });

  it.each(['http://localhost:3000', 'http://127.0.0.1:8080', 'http://[::1]:3000'])('accepts plain http on loopback: %s', (issuer) => {
    expect(problemsOf({ ISSUER: issuer })).toEqual([]);
  });

  it('refuses a database URL until PostgreSQL is supported', () => {
    expect(problemsOf({ DATABASE_URL: 'postgres://db/tessera' }).join()).toContain('DATABASE_URL');
  });

  it.each([':memory:', 'file::memory:?cache=shared'])('refuses an in-memory database, which would lose clients and audit rows: %s', (url) => {
    expect(problemsOf({ DATABASE_URL: url }).join()).toContain('in-memory');
  });
});

describe('keyPolicy', () => {
  it('keeps a retired key for the longest token lifetime, the leeway and one reload interval', async () => {
    const { keyPolicy } = await import('../src/keys/key-manager.js');
    const config = loadConfig({ ACCESS_TOKEN_MAX_TTL: '7200', CLOCK_LEEWAY: '10', KEY_RELOAD_INTERVAL: '60' });
    expect(keyPolicy(config, { now: () => 0 }).retention).toBe(7270);
  });
});
