import { readFileSync } from 'node:fs';
import type * as Os from 'node:os';

import { describe, expect, it, vi } from 'vitest';

import { CONFIG_VARIABLES } from '../src/cli/config-check.js';
import { ConfigError, dialectOf, loadConfig } from '../src/config.js';

// The machine's cores, as config.ts sees them; a test may pretend to another machine.
const cores = vi.hoisted(() => ({ count: undefined as number | undefined }));
vi.mock('node:os', async (original) => {
  const os = await original<typeof Os>();
  return { ...os, availableParallelism: () => cores.count ?? os.availableParallelism() };
});

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
      databaseUrl: 'data/tessera.db',
      databasePoolSize: 10,
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
      DATABASE_POOL_SIZE: '4',
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
      databaseUrl: '/var/lib/tessera/tessera.db',
      databasePoolSize: 4,
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

  it('accepts a PostgreSQL URL and refuses any other database URL', () => {
    for (const url of ['postgres://tessera@db/tessera', 'postgresql://db:5432/tessera?options=-c%20search_path%3Dtessera']) {
      expect(loadConfig({ DATABASE_URL: url }).databaseUrl).toBe(url);
      expect(dialectOf(url)).toBe('postgres');
    }
    expect(dialectOf('/var/lib/tessera/tessera.db')).toBe('sqlite');
    for (const url of ['mysql://db/tessera', 'postgres:/tessera:pw@db/tessera', 'postgresql:db/tessera', 'host=db dbname=tessera password=hunter2', ' postgres://u:pw@db/x', 'file:///var/lib/tessera.db']) {
      const problems = problemsOf({ DATABASE_URL: url }).join();
      expect(problems).toContain('DATABASE_URL must be a SQLite file path');
      expect(problems).not.toMatch(/pw|hunter2/);
    }
    for (const path of ['./data/tessera.db', 'data/tessera.db', 'tessera=1.db', './host=db', 'backup-2026-01-01T00:00:00.db']) expect(problemsOf({ DATABASE_URL: path })).toEqual([]);
    expect(problemsOf({ DATABASE_URL: 'postgres://[bad' }).join()).toContain('DATABASE_URL is not a valid');
  });

  it('takes an IP address or a host name as HOST, and names HOST otherwise', () => {
    for (const host of ['0.0.0.0', '::', '::1', 'localhost', 'localhost.', 'tessera.internal', 'api-1.example.com']) expect(problemsOf({ HOST: host })).toEqual([]);
    for (const host of ['not a host', 'http://0.0.0.0', '-bad.example', 'a..b']) expect(problemsOf({ HOST: host }).join()).toContain('HOST must be an IP address or a host name');
  });

  it('keeps audit events at least as long as a token can live, unless they are kept forever', () => {
    const week = String(7 * 86_400);
    expect(problemsOf({ ACCESS_TOKEN_MAX_TTL: week, CLOCK_LEEWAY: '0', AUDIT_RETENTION_DAYS: '6' }).join()).toContain('AUDIT_RETENTION_DAYS must be at least 7 (ACCESS_TOKEN_MAX_TTL 604800 s + CLOCK_LEEWAY 0 s)');
    expect(problemsOf({ ACCESS_TOKEN_MAX_TTL: week, CLOCK_LEEWAY: '0', AUDIT_RETENTION_DAYS: '7' })).toEqual([]);
    // A token stays active for the leeway after it expires: a week and 10 s need 8 days.
    expect(problemsOf({ ACCESS_TOKEN_MAX_TTL: week, CLOCK_LEEWAY: '10', AUDIT_RETENTION_DAYS: '7' }).join()).toContain('must be at least 8');
    expect(problemsOf({ ACCESS_TOKEN_MAX_TTL: week, AUDIT_RETENTION_DAYS: '0' })).toEqual([]);
  });

  it.each([':memory:', 'file::memory:?cache=shared'])('refuses an in-memory database, which would lose clients and audit rows: %s', (url) => {
    expect(problemsOf({ DATABASE_URL: url }).join()).toContain('in-memory');
  });
});

describe('the thread pool and argon2 concurrency', () => {
  it.each([
    [1, 1, 1],
    [2, 1, 1],
    [4, 3, 2],
    [16, 4, 3],
  ])('on %i cores: UV_THREADPOOL_SIZE defaults to %i, and ARGON2_CONCURRENCY to %i', (count, threads, argon2) => {
    cores.count = count;
    try {
      expect(loadConfig({})).toMatchObject({ threadPoolSize: threads, argon2Limits: { concurrency: argon2 } });
    } finally {
      cores.count = undefined;
    }
  });

  it('keeps argon2 to the cores when the pool is larger, and takes both settings as given', () => {
    cores.count = 2;
    try {
      expect(loadConfig({ UV_THREADPOOL_SIZE: '4' })).toMatchObject({ threadPoolSize: 4, argon2Limits: { concurrency: 2 } });
      expect(loadConfig({ UV_THREADPOOL_SIZE: '3', ARGON2_CONCURRENCY: '6' })).toMatchObject({ threadPoolSize: 3, argon2Limits: { concurrency: 6 } });
    } finally {
      cores.count = undefined;
    }
  });

  it("refuses a pool size libuv would not take as written", () => {
    expect(problemsOf({ UV_THREADPOOL_SIZE: '0' })).toEqual(['UV_THREADPOOL_SIZE must be between 1 and 1024, got 0']);
    expect(problemsOf({ UV_THREADPOOL_SIZE: 'four' })).toEqual(['UV_THREADPOOL_SIZE must be a whole number, got "four"']);
  });
});

describe('keyPolicy', () => {
  it('keeps a retired key for the longest token lifetime, the leeway and one reload interval', async () => {
    const { keyPolicy } = await import('../src/keys/key-manager.js');
    const config = loadConfig({ ACCESS_TOKEN_MAX_TTL: '7200', CLOCK_LEEWAY: '10', KEY_RELOAD_INTERVAL: '60' });
    expect(keyPolicy(config, { now: () => 0 }).retention).toBe(7270);
  });
});

describe('the README configuration table', () => {
  it('documents every variable `tessera config check` knows, and nothing else', () => {
    const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
    const section = readme.slice(readme.indexOf('\n## Configuration'), readme.indexOf('\n## ', readme.indexOf('\n## Configuration') + 1));
    // First column of each table row; a row may name several variables ("`A` / `B`").
    const documented = new Set(
      section
        .split('\n')
        .filter((line) => line.startsWith('| `'))
        .flatMap((line) => [...line.split('|')[1]!.matchAll(/`([A-Z][A-Z0-9_]+)`/g)].map((m) => m[1]!)),
    );
    expect([...documented].sort()).toEqual(CONFIG_VARIABLES.map(([name]) => name).sort());
  });
});
