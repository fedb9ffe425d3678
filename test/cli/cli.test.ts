import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { runCli } from '../../src/cli/main.js';
import { openDatabase } from '../../src/db/database.js';

let dir: string;
let env: NodeJS.ProcessEnv;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'tessera-cli-'));
  env = { DATABASE_URL: join(dir, 'tessera.db') };
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

async function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await runCli(args, env, { stdout: { write: (t: string) => (stdout += t) }, stderr: { write: (t: string) => (stderr += t) } });
  return { code, stdout, stderr };
}

describe('tessera clients create --json', () => {
  it('prints exactly one JSON object with the secret and the RFC 7591-named settings', async () => {
    const { code, stdout, stderr } = await cli(
      'clients', 'create', '--name', 'billing-agent', '--scope', 'read:data write:logs', '--audience', 'https://api.example.com', '--json',
    );
    expect(code).toBe(0);
    expect(stderr).toBe('');
    const created = JSON.parse(stdout) as Record<string, unknown>;
    expect(created).toEqual({
      client_id: expect.stringMatching(/^[0-9a-f-]{36}$/),
      client_secret: expect.stringMatching(/^tsec_/),
      client_name: 'billing-agent',
      description: null,
      scope: 'read:data write:logs',
      default_scope: 'read:data write:logs',
      audience: ['https://api.example.com'],
      default_audience: 'https://api.example.com',
      introspection_audiences: [],
      grant_types: ['client_credentials'],
      token_endpoint_auth_method: 'client_secret_basic',
      access_token_ttl: null,
      token_rate_limit: null,
      enabled: true,
      created_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
      updated_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
    });
  });

  it('takes every documented flag', async () => {
    const { stdout } = await cli(
      'clients', 'create', '--name', 'ops', '--id', 'ops-agent', '--description', 'nightly jobs', '--scope', 'a b', '--default-scope', 'a',
      '--audience', 'https://one.example', '--audience', 'https://two.example', '--default-audience', 'https://two.example',
      '--lifetime', '900', '--auth-method', 'client_secret_post', '--disabled', '--json',
    );
    expect(JSON.parse(stdout)).toMatchObject({
      client_id: 'ops-agent',
      description: 'nightly jobs',
      scope: 'a b',
      default_scope: 'a',
      audience: ['https://one.example', 'https://two.example'],
      default_audience: 'https://two.example',
      access_token_ttl: 900,
      token_endpoint_auth_method: 'client_secret_post',
      enabled: false,
    });
  });

  it('stores only an argon2id hash of the secret, and never shows it again', async () => {
    const created = JSON.parse((await cli('clients', 'create', '--name', 'x', '--json')).stdout) as { client_id: string; client_secret: string };
    const db = openDatabase(env.DATABASE_URL!);
    const rows = await db.selectFrom('client_secrets').selectAll().execute();
    await db.destroy();
    expect(rows).toHaveLength(1);
    expect(rows[0]!.hash).toMatch(/^\$argon2id\$/);
    expect(JSON.stringify(rows)).not.toContain(created.client_secret.slice('tsec_0123456789abcdef_'.length));

    const shown = (await cli('clients', 'get', created.client_id, '--json')).stdout + (await cli('clients', 'list', '--json')).stdout;
    expect(shown).toContain(created.client_id);
    expect(shown).not.toContain('tsec_');
    expect(shown).not.toContain('argon2');
  });

  it('prints the secret once in human form, with the warning on stderr', async () => {
    const { stdout, stderr } = await cli('clients', 'create', '--name', 'human');
    expect(stdout).toMatch(/^client_id: {5}\S+\nclient_secret: tsec_\S+\n$/);
    expect(stderr).toContain('cannot be shown again');
  });

  it.each([
    [['clients', 'create', '--json'], 1, 'invalid client_name'],
    [['clients', 'create', '--name', 'x', '--audience', 'not-a-uri'], 1, 'invalid audience'],
    [['clients', 'create', '--name', 'x', '--lifetime', 'soon'], 2, '--lifetime must be a whole number'],
    [['clients', 'create', '--name', 'x', '--auth-method', 'none'], 1, 'invalid token_endpoint_auth_method'],
    [['clients', 'create', '--name', 'x', '--bogus'], 2, 'Unknown option'],
    [['clients', 'explode'], 2, 'unknown command'],
    [['clients', 'get', 'nobody'], 1, 'no client nobody'],
  ])('fails %j with exit %i and a message on stderr only', async (args, code, message) => {
    const res = await cli(...args);
    expect(res.code).toBe(code);
    expect(res.stdout).toBe('');
    expect(res.stderr).toContain(message);
  });

  it('takes an id that begins with "-" after "--" (kids are base64url and often do)', async () => {
    await cli('clients', 'create', '--name', 'dash', '--id=-dash-id');
    const res = await cli('clients', 'get', '--json', '--', '-dash-id');
    expect(res.code).toBe(0);
    expect(JSON.parse(res.stdout)).toMatchObject({ client_id: '-dash-id' });
  });

  it('refuses a duplicate client_id', async () => {
    await cli('clients', 'create', '--name', 'a', '--id', 'same-id');
    const res = await cli('clients', 'create', '--name', 'b', '--id', 'same-id');
    expect(res.code).toBe(1);
    expect(res.stderr).toContain('already exists');
  });
});

describe('tessera clients disable, enable, delete, revoke-tokens', () => {
  const created = async (...extra: string[]) =>
    (JSON.parse((await cli('clients', 'create', '--name', 'x', ...extra, '--json')).stdout) as { client_id: string; introspection_audiences: string[] });

  it('takes introspection rights with --introspect', async () => {
    expect((await created('--introspect', 'https://api.example.com', '--introspect', 'https://b.example')).introspection_audiences).toEqual([
      'https://api.example.com',
      'https://b.example',
    ]);
    expect((await created('--introspect', '*')).introspection_audiences).toEqual(['*']);
  });

  it('changes the client and writes one audit row per change, naming the CLI as actor', async () => {
    const { client_id } = await created();
    expect(JSON.parse((await cli('clients', 'disable', client_id, '--json')).stdout)).toEqual({ client_id, enabled: false });
    expect(JSON.parse((await cli('clients', 'get', client_id, '--json')).stdout)).toMatchObject({ enabled: false });
    expect(JSON.parse((await cli('clients', 'enable', client_id, '--json')).stdout)).toEqual({ client_id, enabled: true });
    const revoked = JSON.parse((await cli('clients', 'revoke-tokens', client_id, '--json')).stdout) as Record<string, string>;
    expect(revoked).toEqual({ client_id, tokens_revoked_before: expect.stringMatching(/^\d{4}-/) });
    expect(JSON.parse((await cli('clients', 'delete', client_id, '--json')).stdout)).toEqual({ client_id, deleted: true });
    expect((await cli('clients', 'get', client_id)).code).toBe(1);

    const db = openDatabase(env.DATABASE_URL!);
    const rows = await db.selectFrom('audit_events').select(['type', 'client_id', 'details']).orderBy('id').execute();
    await db.destroy();
    expect(rows.map((r) => r.type)).toEqual(['client.created', 'client.disabled', 'client.enabled', 'client.tokens_revoked', 'client.deleted']);
    expect(rows.every((r) => r.client_id === client_id && JSON.parse(r.details!).actor === 'cli')).toBe(true);
  });

  it.each(['disable', 'enable', 'delete', 'revoke-tokens'])('%s refuses an unknown client', async (command) => {
    const res = await cli('clients', command, 'nobody');
    expect(res.code).toBe(1);
    expect(res.stderr).toContain('no client nobody');
  });
});

describe('tessera parity with the admin API', () => {
  it('creates an admin client with --admin', async () => {
    env.ISSUER = 'https://auth.example.com';
    const created = JSON.parse((await cli('clients', 'create', '--name', 'ops', '--admin', '--json')).stdout) as Record<string, unknown>;
    expect(created).toMatchObject({ audience: ['https://auth.example.com/admin'], scope: 'admin:read admin:write', default_audience: 'https://auth.example.com/admin' });
  });

  it('updates only the settings named by flags', async () => {
    const { client_id } = JSON.parse((await cli('clients', 'create', '--name', 'u', '--scope', 'a b', '--audience', 'https://a.example', '--json')).stdout) as { client_id: string };
    const updated = JSON.parse((await cli('clients', 'update', client_id, '--description', 'nightly', '--lifetime', '600', '--json')).stdout) as Record<string, unknown>;
    expect(updated).toMatchObject({ client_name: 'u', description: 'nightly', access_token_ttl: 600, scope: 'a b', audience: ['https://a.example'] });
    const res = await cli('clients', 'update', client_id, '--scope', 'c');
    expect(res.code).toBe(1);
    expect(res.stderr).toContain('invalid default_scope');
  });

  it('lists keys and tails the audit log as one JSON value', async () => {
    env.KEYS_DIR = join(dir, 'keys');
    const { stdout: keys } = await cli('keys', 'list', '--json');
    expect(JSON.parse(keys)).toEqual([expect.objectContaining({ kid: expect.any(String), state: 'active', created_at: expect.any(String), revoked_at: null })]);

    const { client_id } = JSON.parse((await cli('clients', 'create', '--name', 't', '--json')).stdout) as { client_id: string };
    await cli('clients', 'disable', client_id);
    const tail = JSON.parse((await cli('audit', 'tail', '--client-id', client_id, '--json')).stdout) as { type: string }[];
    expect(tail.map((e) => e.type)).toEqual(['client.created', 'client.disabled']);
    const limited = JSON.parse((await cli('audit', 'tail', '--limit', '1', '--json')).stdout) as { type: string }[];
    expect(limited.map((e) => e.type)).toEqual(['client.disabled']);
  });
});

describe('tessera migrate and rotate-secret', () => {
  it('applies migrations once', async () => {
    expect(JSON.parse((await cli('migrate', '--json')).stdout)).toEqual({
      applied: ['2026-11-23-0001-initial', '2026-11-23-0002-introspection-revocation', '2026-11-23-0003-audit-jti-index', '2026-11-23-0004-token-rate-limit'],
    });
    expect(JSON.parse((await cli('migrate', '--json')).stdout)).toEqual({ applied: [] });
  });

  it('rotates a secret, keeping the previous one for the given time', async () => {
    const { client_id } = JSON.parse((await cli('clients', 'create', '--name', 'r', '--json')).stdout) as { client_id: string };
    const rotated = JSON.parse((await cli('clients', 'rotate-secret', client_id, '--previous-expires-in', '60', '--json')).stdout) as Record<string, unknown>;
    expect(rotated).toEqual({ client_id, client_secret: expect.stringMatching(/^tsec_/), previous_secret_expires_in: 60 });

    const db = openDatabase(env.DATABASE_URL!);
    const rows = await db.selectFrom('client_secrets').selectAll().orderBy('created_at').execute();
    await db.destroy();
    expect(rows).toHaveLength(2);
    const previous = rows.find((r) => r.expires_at !== null);
    expect(Number(previous!.expires_at) - Math.floor(Date.now() / 1000)).toBeGreaterThan(55);
    expect(rows.filter((r) => r.expires_at === null)).toHaveLength(1);
  });
});
