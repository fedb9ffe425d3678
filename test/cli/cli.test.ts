import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';

import { sql } from 'kysely';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { migrations } from '../../migrations/index.js';
import { presentAuditEvent } from '../../src/admin/audit-events.js';
import { EXPORT_BATCH, EXPORT_SETTLE_MS } from '../../src/audit/audit-export.js';
import { PRUNE_BATCH } from '../../src/audit/audit-retention.js';
import { CONFIG_VARIABLES } from '../../src/cli/config-check.js';
import { runCli } from '../../src/cli/main.js';
import { systemClock } from '../../src/clock.js';
import { loadConfig } from '../../src/config.js';
import { openDatabase } from '../../src/db/database.js';
import { KeyManager, keyPolicy } from '../../src/keys/key-manager.js';
import {
  API,
  basic,
  cliOutputs,
  credentialLines,
  credentialsInOutput,
  cutOnce,
  install,
  requestToken,
  storedSecretHashes,
  tessera,
  type Installation,
  type ProcessOutput,
} from '../security/e2e-support.js';
import { insertRows, rowsAt } from '../support/audit-rows.js';
import { createTestDatabase, migrateAllButLast, testDialect, type TestDatabase } from '../support/database.js';

interface CliRun {
  readonly args: readonly string[];
  readonly ok: boolean;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * The secrets the runs showed by design, and every run's output with that one showing cut out:
 * a successful `clients create` or `clients rotate-secret` prints the secret it made on stdout,
 * once, as the client_secret member of its JSON (--json) or on its `client_secret:` line. Anything
 * else that holds a credential, stderr above all, is a leak.
 */
function secretsShown(runs: readonly CliRun[]): { secrets: string[]; outputs: ProcessOutput[] } {
  const secrets: string[] = [];
  const outputs = runs.flatMap((run) => {
    const command = run.args.slice(0, 2).join(' ');
    if (!run.ok || (command !== 'clients create' && command !== 'clients rotate-secret')) return cliOutputs(run.args, run);
    const json = run.args.includes('--json');
    const secret = json ? (JSON.parse(run.stdout) as { client_secret?: string }).client_secret : /^client_secret: (.*)$/m.exec(run.stdout)?.[1];
    if (!secret) throw new Error(`tessera ${run.args.join(' ')} showed no secret: ${run.stdout}`);
    secrets.push(secret);
    const stdout = cutOnce(run.stdout, json ? `"client_secret": ${JSON.stringify(secret)}` : `client_secret: ${secret}\n`);
    return cliOutputs(run.args, { stdout, stderr: run.stderr });
  });
  return { secrets, outputs };
}

let dir: string;
let database: TestDatabase;
let env: NodeJS.ProcessEnv;
/** Every in-process run of the test, checked for credentials after it. */
let runs: CliRun[];
beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tessera-cli-'));
  database = await createTestDatabase(dir);
  env = { DATABASE_URL: database.url };
  runs = [];
});
afterEach(async () => {
  try {
    // Whatever a test did, its output shows each secret only where it is meant to, and no hash.
    const { secrets, outputs } = secretsShown(runs);
    // (A test whose commands never migrated the database has no secrets table, and no hashes.)
    const hashes = await storedSecretHashes(env.DATABASE_URL!).catch(() => []);
    expect(credentialLines(outputs, [...secrets, ...hashes])).toEqual([]);
  } finally {
    await database.drop();
    rmSync(dir, { recursive: true, force: true });
  }
});

async function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await runCli(args, env, { stdout: { write: (t: string) => (stdout += t) }, stderr: { write: (t: string) => (stderr += t) } });
  runs.push({ args, ok: code === 0, stdout, stderr });
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
    [['clients', 'create', '--json'], 2, 'clients create needs --name <name>'],
    [['clients', 'create', '--name', '', '--json'], 1, 'invalid client_name'],
    [['clients', 'create', '--name', 'x', '--audience', 'not-a-uri'], 1, 'invalid audience'],
    [['clients', 'create', '--name', 'x', '--lifetime', 'soon'], 2, '--lifetime must be a whole number'],
    [['clients', 'create', '--name', 'x', '--auth-method', 'none'], 1, 'invalid token_endpoint_auth_method'],
    [['clients', 'create', '--name', 'x', '--bogus'], 2, 'Unknown option'],
    [['clients', 'explode'], 2, 'unknown command'],
    [['clients', 'update', 'some-id', '--disabled'], 2, '--disabled does not apply to "clients update"'],
    [['clients', 'update', 'some-id', '--admin'], 2, '--admin does not apply to "clients update"'],
    [['clients', 'disable', 'some-id', '--now'], 2, '--now does not apply to "clients disable"'],
    [['keys', 'list', '--limit', '5'], 2, '--limit does not apply to "keys list"'],
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

  it('refuses every keys command on a directory without keys, creating nothing there', async () => {
    env.KEYS_DIR = join(dir, 'not-the-servers-keys');
    for (const args of [['list'], ['rotate'], ['revoke', 'some-kid']]) {
      const res = await cli('keys', ...args);
      expect(res.code).toBe(1);
      expect(res.stderr).toContain(`no signing keys in ${env.KEYS_DIR}`);
    }
    expect(existsSync(env.KEYS_DIR)).toBe(false);
    const rows = await withDb((db) => db.selectFrom('audit_events').select('type').where('type', 'like', 'key.%').execute());
    expect(rows).toEqual([]);
  });

  it('lists keys and tails the audit log as one JSON value', async () => {
    env.KEYS_DIR = join(dir, 'keys');
    // The keys a server made when it started.
    await KeyManager.open(keyPolicy(loadConfig(env), systemClock), () => Promise.resolve());
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
      applied: ['2026-11-23-0001-initial', '2026-11-23-0002-introspection-revocation', '2026-11-23-0003-audit-jti-index', '2026-11-23-0004-token-rate-limit', '2026-11-24-0005-postgres-key-order', '2026-11-24-0006-shared-limits', '2026-11-24-0007-clients-version', '2026-11-24-0008-secrets-follow-clients'],
      newer: [],
    });
    expect(JSON.parse((await cli('migrate', '--json')).stdout)).toEqual({ applied: [], newer: [] });
  });

  it('reports a database it cannot use in one line on stderr, without a stack trace', async () => {
    const attempt = async (args: string[], databaseUrl: string) => {
      let stderr = '';
      const code = await runCli(args, { ...env, DATABASE_URL: databaseUrl }, { stdout: { write: () => true }, stderr: { write: (t: string) => (stderr += t) } });
      return { code, stderr };
    };
    const oneLine = { code: 1, stderr: expect.stringMatching(/^tessera: cannot use the database \(DATABASE_URL\): [^\n]+\n$/) as unknown };
    expect(await attempt(['backup', join(dir, 'never.db')], join(dir, 'absent', 'tessera.db'))).toMatchObject(oneLine);
    expect(await attempt(['backup', join(dir, 'never.db')], dir)).toMatchObject(oneLine);
    expect(await attempt(['migrate'], 'postgres://postgres@127.0.0.1:1/tessera')).toMatchObject(oneLine);
  });

  it('backs up a SQLite database in use to a new, owner-only file, with the commits still in its WAL', async () => {
    const file = join(dir, 'backup.db');
    if (testDialect === 'postgres') {
      expect(await cli('backup', file)).toMatchObject({ code: 1, stderr: 'tessera: on PostgreSQL, back up with pg_dump (README "Upgrades and backups")\n' });
      return;
    }
    await cli('migrate');
    // A server's connection, open throughout: its commits stay in the -wal file, not the database file.
    const db = openDatabase(database.url);
    try {
      await db.insertInto('revoked_tokens').values({ jti: 'in-the-wal', client_id: 'c', expires_at: 1, revoked_at: 1 }).execute();
      expect(await cli('backup', file, '--json')).toMatchObject({ code: 0, stdout: `${JSON.stringify({ backup: file })}\n` });
    } finally {
      await db.destroy();
    }
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const copy = openDatabase(file);
    try {
      expect(await copy.selectFrom('revoked_tokens').select('jti').execute()).toEqual([{ jti: 'in-the-wal' }]);
    } finally {
      await copy.destroy();
    }
    expect(await cli('backup', file)).toMatchObject({ code: 1, stderr: `tessera: ${file} exists; a backup never writes over a file\n` });
    expect((await cli('backup')).code).toBe(2);
  });

  it('leaves upgrading a database in use to `migrate`, and says when the database is newer', async () => {
    const db = openDatabase(database.url);
    try {
      await migrateAllButLast(db);
      const last = Object.keys(migrations).sort().at(-1)!;
      expect(await cli('clients', 'list')).toMatchObject({ code: 1, stderr: `tessera: the database schema is older than this version (${last} not applied): run \`tessera migrate\` first\n` });
      expect(JSON.parse((await cli('migrate', '--json')).stdout)).toEqual({ applied: [last], newer: [] });
      await sql`insert into kysely_migration (name, timestamp) values ('2099-01-01-0001-future', ${new Date().toISOString()})`.execute(db);
      expect((await cli('migrate')).stdout).toBe('the database schema is newer than this version (2099-01-01-0001-future); nothing to apply\n');
      expect((await cli('clients', 'list', '--json')).code).toBe(0);
    } finally {
      await db.destroy();
    }
  });

  it('rotates a secret, keeping the previous one for the given time', async () => {
    const { client_id } = JSON.parse((await cli('clients', 'create', '--name', 'r', '--json')).stdout) as { client_id: string };
    const tooLong = await cli('clients', 'rotate-secret', client_id, '--previous-expires-in', '99999999999999999999999');
    expect(tooLong.code).toBe(1);
    expect(tooLong.stderr).toContain('previous_secret_expires_in must be a whole number of seconds between 0 and 31536000');
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

describe('secrets in what the real processes write', () => {
  let inst: Installation;
  beforeEach(async () => {
    // Every log level the server has, so a line only debug or trace would write is read too.
    // CLIENT_CACHE_TTL=0: the server reads each CLI change at once (by default within a second).
    inst = await install({ LOG_LEVEL: 'trace', TESSERA_BOOTSTRAP_ADMIN: 'false', CLIENT_CACHE_TTL: '0' });
  });
  afterEach(() => inst.cleanup());

  it('`tessera` shows each secret once, where create or rotate-secret prints it; nothing else it or the server writes holds a credential', async () => {
    const spawned: CliRun[] = [];
    const run = async (...args: string[]) => {
      const result = await tessera(inst.env, ...args).then(
        (r) => ({ ok: true, ...r }),
        (err: { stdout?: string; stderr?: string }) => ({ ok: false, stdout: err.stdout ?? '', stderr: err.stderr ?? '' }),
      );
      spawned.push({ args, ...result });
      return result;
    };
    const tokens: string[] = [];
    const token = async (authorization: string, body = '') => {
      const res = await fetch(`${inst.issuer}/oauth/token`, {
        method: 'POST',
        headers: { ...(authorization ? { Authorization: authorization } : {}), 'Content-Type': 'application/x-www-form-urlencoded' },
        body: `grant_type=client_credentials${body}`,
      });
      const answer = (await res.json()) as { access_token?: string };
      if (answer.access_token) tokens.push(answer.access_token);
      return res.status;
    };

    const human = await run('clients', 'create', '--name', 'human', '--audience', API);
    const [, humanId, humanSecret] = /^client_id: +(\S+)\nclient_secret: (\S+)\n$/.exec(human.stdout)!;
    const poster = JSON.parse((await run('clients', 'create', '--name', 'poster', '--audience', API, '--auth-method', 'client_secret_post', '--json')).stdout) as { client_id: string; client_secret: string };
    const server = await inst.start();

    expect(await token(basic(humanId!, humanSecret!))).toBe(200);
    expect(await token('', `&client_id=${poster.client_id}&client_secret=${poster.client_secret}`)).toBe(200);
    expect(await token(basic(humanId!, `${humanSecret!}x`))).toBe(401);
    // A workload that swaps its id and secret: the server must not log the "id" it was sent.
    expect(await token(basic(humanSecret!, humanId!))).toBe(401);
    expect(await token('', `&client_id=${poster.client_secret}&client_secret=${poster.client_id}`)).toBe(401);

    const rotated = await run('clients', 'rotate-secret', humanId!, '--previous-expires-in', '60');
    const newHumanSecret = /^client_secret: (\S+)$/m.exec(rotated.stdout)![1]!;
    const newPosterSecret = (JSON.parse((await run('clients', 'rotate-secret', poster.client_id, '--previous-expires-in', '0', '--json')).stdout) as { client_secret: string }).client_secret;
    expect((await requestToken(inst.issuer, basic(humanId!, humanSecret!))).kind).toBe('token');
    expect(await token(basic(humanId!, newHumanSecret))).toBe(200);
    expect(await token('', `&client_id=${poster.client_id}&client_secret=${poster.client_secret}`)).toBe(401);
    expect(await token('', `&client_id=${poster.client_id}&client_secret=${newPosterSecret}`)).toBe(200);

    // Every command that reads or changes a client, in both forms, and some that fail.
    for (const json of [[], ['--json']]) {
      await run('clients', 'get', humanId!, ...json);
      await run('clients', 'list', ...json);
      await run('audit', 'tail', '--limit', '50', ...json);
      await run('keys', 'list', ...json);
    }
    await run('clients', 'update', poster.client_id, '--description', 'rotated', '--json');
    await run('clients', 'revoke-tokens', humanId!);
    await run('clients', 'disable', poster.client_id);
    expect((await run('clients', 'rotate-secret', 'nobody')).ok).toBe(false);
    expect((await run('clients', 'create', '--name', 'x', '--audience', 'not-a-uri')).ok).toBe(false);
    // Within the second of revoke-tokens the answer is 503 with Retry-After: 1; then a token.
    await expect.poll(() => token(basic(humanId!, newHumanSecret)), { timeout: 5000, interval: 250 }).toBe(200);

    server.process.kill('SIGTERM');
    expect(await server.exited).toBe(0);

    const { secrets, outputs } = secretsShown(spawned);
    expect(secrets.sort()).toEqual([humanSecret, poster.client_secret, newHumanSecret, newPosterSecret].sort());
    // Each of the four was printed by exactly one run (cut out above), and shows nowhere else.
    const hashes = await storedSecretHashes(inst.databaseUrl);
    expect(hashes.length).toBeGreaterThanOrEqual(3);
    expect(tokens.length).toBeGreaterThanOrEqual(5);
    const credentials = [...secrets, ...tokens, ...hashes];
    expect([...credentialLines(outputs, credentials), ...credentialsInOutput(inst.servers, credentials)]).toEqual([]);
    // The server did log (the audit mirror and access log at least), so the scan read something.
    expect(server.stdout.filter((line) => line.includes('"msg":"token.failed"')).length).toBeGreaterThanOrEqual(4);
  }, 120_000);
});

describe('tessera config check', () => {
  /** Runs with `replaced` as the whole environment, then puts the test database back for afterEach. */
  async function check(replaced: NodeJS.ProcessEnv, ...args: string[]) {
    const saved = env;
    env = replaced;
    try {
      return await cli('config', 'check', ...args);
    } finally {
      env = saved;
    }
  }

  const PASSWORD = 'Sup3r-s3cret-pa55word';
  const keysDir = () => join(dir, 'keys-never-made');

  it('prints every setting with its source, the database password masked, and opens neither database nor keys', async () => {
    const url = `postgres://tessera:${PASSWORD}@db.invalid:5432/tessera?sslmode=require&sslpassword=${PASSWORD}x`;
    const res = await check({ DATABASE_URL: url, PORT: '8443', KEYS_DIR: keysDir(), ISSUER: '' }, '--json');
    expect(res.code).toBe(0);
    expect(res.stderr).toBe('');
    expect(res.stdout).not.toContain(PASSWORD);
    const { valid, settings } = JSON.parse(res.stdout) as { valid: boolean; settings: Record<string, { value: unknown; source: string }> };
    expect(valid).toBe(true);
    expect(settings.DATABASE_URL).toEqual({ value: 'postgres://tessera:****@db.invalid:5432/tessera?sslmode=require&sslpassword=****', source: 'environment' });
    expect(settings.PORT).toEqual({ value: 8443, source: 'environment' });
    // An empty variable is unset, as the server reads it.
    expect(settings.ISSUER).toEqual({ value: 'http://localhost:8443', source: 'default' });
    expect(settings.AUDIT_RETENTION_DAYS).toEqual({ value: 0, source: 'default' });
    expect(settings.TOKEN_CORS_ORIGINS).toEqual({ value: [], source: 'default' });
    expect(settings.METRICS_PORT).toEqual({ value: null, source: 'default' });
    expect(Object.keys(settings)).toEqual(CONFIG_VARIABLES.map(([name]) => name));
    expect(existsSync(keysDir())).toBe(false);

    const human = await check({ DATABASE_URL: url, KEYS_DIR: keysDir() });
    expect(human.code).toBe(0);
    expect(human.stdout).not.toContain(PASSWORD);
    expect(human.stdout).toMatch(/^configuration is valid\n/);
    expect(human.stdout).toMatch(/^DATABASE_URL +postgres:\/\/tessera:\*\*\*\*@db\.invalid:5432\/tessera\?sslmode=require&sslpassword=\*\*\*\* +environment$/m);
    expect(human.stdout).toMatch(/^PORT +3000 +default$/m);
    expect(human.stdout.trim().split('\n')).toHaveLength(1 + CONFIG_VARIABLES.length);

    // A SQLite file that does not exist yet is not created.
    const file = join(dir, 'never', 'tessera.db');
    expect((await check({ DATABASE_URL: file, KEYS_DIR: keysDir() })).code).toBe(0);
    expect(existsSync(join(dir, 'never'))).toBe(false);
  });

  it('lists every problem, with credentials masked, and exits 1', async () => {
    const bad = {
      PORT: 'eighty',
      DATABASE_POOL_SIZE: '0',
      AUDIT_RETENTION_DAYS: '-3',
      LOG_LEVEL: 'loud',
      ISSUER: `http://ops:${PASSWORD}@auth.example.com/tessera`,
    };
    const res = await check(bad);
    expect(res.code).toBe(1);
    expect(res.stdout).toBe('');
    for (const name of ['PORT', 'DATABASE_POOL_SIZE', 'AUDIT_RETENTION_DAYS', 'LOG_LEVEL', 'ISSUER must not contain credentials', 'ISSUER must use https', 'ISSUER must be an origin without a path']) {
      expect(res.stderr).toContain(name);
    }
    expect(res.stderr).not.toContain(PASSWORD);
    expect(res.stderr).toContain('http://ops:****@auth.example.com/tessera');

    const json = await check(bad, '--json');
    expect(json.code).toBe(1);
    const answer = JSON.parse(json.stdout) as { valid: boolean; problems: string[] };
    expect(answer.valid).toBe(false);
    expect(answer.problems).toHaveLength(7);
    expect(json.stdout).not.toContain(PASSWORD);
  });

  it('names every variable loadConfig reads, and nothing else', () => {
    const read = new Set<string>();
    loadConfig(new Proxy({}, { get: (_target, name) => void read.add(String(name)) }));
    expect(CONFIG_VARIABLES.map(([name]) => name).sort()).toEqual([...read].sort());
  });

  it('knows no other config command', async () => {
    const res = await cli('config', 'show');
    expect(res.code).toBe(2);
    expect(res.stderr).toContain('unknown command "config show"');
  });
});

const DAY = 86_400_000;

async function withDb<T>(work: (db: ReturnType<typeof openDatabase>) => Promise<T>): Promise<T> {
  const db = openDatabase(env.DATABASE_URL!);
  try {
    return await work(db);
  } finally {
    await db.destroy();
  }
}

describe('tessera audit prune', () => {
  it('deletes, in batches, the events older than --older-than-days, keeps the newer, and records audit.pruned', async () => {
    await cli('migrate');
    const now = Date.now();
    const old = rowsAt(Array.from({ length: 2 * PRUNE_BATCH + 17 }, (_, i) => now - 31 * DAY - (i % 3) * 1000));
    const kept = rowsAt([now - 29 * DAY, now - DAY], 'test.new');
    await withDb((db) => insertRows(db, [...old, ...kept]));

    const res = await cli('audit', 'prune', '--older-than-days', '30', '--json');
    expect(res.code).toBe(0);
    const answer = JSON.parse(res.stdout) as { deleted: number; cutoff: string; older_than_days: number };
    expect(answer).toEqual({ deleted: old.length, cutoff: expect.stringMatching(/^\d{4}-/), older_than_days: 30 });
    expect(Math.abs(Date.parse(answer.cutoff) - (now - 30 * DAY))).toBeLessThan(60_000);

    const rows = await withDb((db) => db.selectFrom('audit_events').select(['type', 'details']).execute());
    expect(rows.map((r) => r.type).sort()).toEqual(['audit.pruned', 'test.new', 'test.new']);
    expect(JSON.parse(rows.find((r) => r.type === 'audit.pruned')!.details!)).toEqual({
      actor: 'cli',
      deleted: old.length,
      cutoff: answer.cutoff,
      older_than_days: 30,
    });

    // Nothing left to delete: nothing recorded.
    const again = await cli('audit', 'prune', '--older-than-days', '30');
    expect(again.stdout).toMatch(/^deleted 0 audit events older than \d{4}-/);
    expect((await withDb((db) => db.selectFrom('audit_events').select('type').where('type', '=', 'audit.pruned').execute())).length).toBe(1);
  });

  it('defaults to AUDIT_RETENTION_DAYS', async () => {
    await cli('migrate');
    await withDb((db) => insertRows(db, rowsAt([Date.now() - 8 * DAY, Date.now() - 6 * DAY])));
    env.AUDIT_RETENTION_DAYS = '7';
    expect(JSON.parse((await cli('audit', 'prune', '--json')).stdout)).toMatchObject({ deleted: 1, older_than_days: 7 });
  });

  it('refuses a retention shorter than the longest token lifetime', async () => {
    await cli('migrate');
    env.ACCESS_TOKEN_MAX_TTL = String(2 * 86_400);
    const res = await cli('audit', 'prune', '--older-than-days', '2');
    expect(res.code).toBe(2);
    expect(res.stderr).toContain('--older-than-days must be at least 3 (ACCESS_TOKEN_MAX_TTL 172800 s + CLOCK_LEEWAY 10 s)');
    expect(JSON.parse((await cli('audit', 'prune', '--older-than-days', '3', '--json')).stdout)).toMatchObject({ older_than_days: 3 });
  });

  it.each([
    [[], 'AUDIT_RETENTION_DAYS'],
    [['--older-than-days', '0'], '--older-than-days must be a whole number from 1'],
    [['--older-than-days', 'a-month'], '--older-than-days must be a whole number'],
  ])('refuses to run without a retention: %j', async (args, message) => {
    const res = await cli('audit', 'prune', ...args);
    expect(res.code).toBe(2);
    expect(res.stdout).toBe('');
    expect(res.stderr).toContain(message);
  });
});

describe('tessera audit export', () => {
  const lines = (stdout: string) => stdout.split('\n').filter(Boolean).map((line) => JSON.parse(line) as ReturnType<typeof presentAuditEvent>);

  it('writes every event within the bounds once, oldest first, as the admin API presents them, across batches', async () => {
    await cli('migrate');
    const since = Date.parse('2026-01-01T00:00:00Z');
    const until = Date.parse('2026-01-02T00:00:00Z');
    // Runs of equal times, so batches end inside them.
    const inside = rowsAt(Array.from({ length: 2 * EXPORT_BATCH + 123 }, (_, i) => since + Math.floor(i / 7) * 1000));
    const outside = rowsAt([since - 1, until, until + 1], 'test.outside');
    await withDb((db) => insertRows(db, [...inside, ...outside]));

    const res = await cli('audit', 'export', '--since', '2026-01-01T00:00:00Z', '--until', '2026-01-02T01:00:00+01:00', '--format', 'jsonl');
    expect(res.code).toBe(0);
    expect(res.stderr).toBe(`exported ${inside.length} audit events; the next export starts at --since 2026-01-02T00:00:00.000Z\n`);
    const events = lines(res.stdout);
    const expected = [...inside].sort((a, b) => a.occurred_at - b.occurred_at || (a.id < b.id ? -1 : 1));
    expect(events.map((e) => e.id)).toEqual(expected.map((r) => r.id));
    const stored = await withDb((db) => db.selectFrom('audit_events').selectAll().where('id', '=', expected[0]!.id).executeTakeFirstOrThrow());
    expect(events[0]).toEqual(presentAuditEvent(stored));

    // --format defaults to jsonl; without --until, up to a minute ago.
    expect(lines((await cli('audit', 'export', '--since', '2026-01-01T00:00:00.000Z')).stdout)).toHaveLength(inside.length + 2);
  });

  it('stops a minute before now, where rows may still be committing, and names where the next export starts', async () => {
    await cli('migrate');
    const now = Date.now();
    const settled = rowsAt([now - EXPORT_SETTLE_MS - 5_000], 'test.settled');
    const recent = rowsAt([now - EXPORT_SETTLE_MS + 5_000, now - 1_000], 'test.recent');
    await withDb((db) => insertRows(db, [...settled, ...recent]));
    const since = new Date(now - 10 * EXPORT_SETTLE_MS).toISOString();

    for (const until of [[], ['--until', new Date(now + 3_600_000).toISOString()]]) {
      const res = await cli('audit', 'export', '--since', since, ...until);
      expect(res.code).toBe(0);
      expect(lines(res.stdout).map((e) => e.id)).toEqual(settled.map((r) => r.id));
      const next = /; the next export starts at --since (\S+)\n$/.exec(res.stderr)?.[1];
      // The next export, from there, gets each recent row: none is skipped between the two.
      expect(Date.parse(next!)).toBeGreaterThan(settled[0]!.occurred_at);
      expect(Date.parse(next!)).toBeLessThanOrEqual(Math.min(...recent.map((r) => r.occurred_at)));
    }

    // A --since within the last minute exports nothing yet, and starts the next export there.
    const fresh = new Date(now - 1_000).toISOString();
    const res = await cli('audit', 'export', '--since', fresh);
    expect(res.code).toBe(0);
    expect(res.stdout).toBe('');
    expect(res.stderr).toBe(`exported 0 audit events; the next export starts at --since ${fresh}\n`);
  });

  it('shows no credential: secrets and hashes stay out of the exported events', async () => {
    const { client_id } = JSON.parse((await cli('clients', 'create', '--name', 'x', '--json')).stdout) as { client_id: string };
    await cli('clients', 'rotate-secret', client_id, '--json');
    // Old enough to be exported: the export leaves the last minute alone.
    await withDb((db) => db.updateTable('audit_events').set({ occurred_at: Date.now() - 2 * EXPORT_SETTLE_MS }).execute());
    const res = await cli('audit', 'export', '--since', new Date(Date.now() - 3 * EXPORT_SETTLE_MS).toISOString());
    expect(lines(res.stdout).map((e) => e.type)).toEqual(expect.arrayContaining(['client.created', 'client.secret_rotated']));
    // afterEach checks this run's output for the two secrets and their hashes.
  });

  it.each([
    [['--since', '2026-02-30T00:00:00Z'], '--since must be an RFC 3339 date-time'],
    [['--since', 'yesterday'], '--since must be an RFC 3339 date-time'],
    [['--since', '2026-01-01T00:00:00Z', '--until', '2026-01-01'], '--until must be an RFC 3339 date-time'],
    [['--since', '2026-01-02T00:00:00Z', '--until', '2026-01-01T00:00:00Z'], '--until must be later than --since'],
    [[], 'needs --since'],
    [['--since', '2026-01-01T00:00:00Z', '--format', 'csv'], '--format must be jsonl'],
    [['--since', '2026-01-01T00:00:00Z', '--json'], '--json does not apply'],
  ])('refuses %j', async (args, message) => {
    const res = await cli('audit', 'export', ...args);
    expect(res.code).toBe(2);
    expect(res.stdout).toBe('');
    expect(res.stderr).toContain(message);
  });

  it('waits for a slow stdout instead of buffering the table, and stops if stdout fails', async () => {
    await cli('migrate');
    const since = Date.parse('2026-01-01T00:00:00Z');
    await withDb((db) => insertRows(db, rowsAt(Array.from({ length: 3 * EXPORT_BATCH }, (_, i) => since + i))));

    let text = '';
    let writesWhileFull = 0;
    let writes = 0;
    class SlowStdout extends Writable {
      constructor() {
        super({ highWaterMark: 1024, write: (chunk: Buffer, _encoding, done) => void setTimeout(() => ((text += chunk.toString()), done()), 5) });
      }
      override write(chunk: unknown, ...rest: never[]): boolean {
        writes += 1;
        if (this.writableNeedDrain) writesWhileFull += 1;
        return super.write(chunk, ...rest);
      }
    }
    const stderr = { text: '', write: (t: string) => (stderr.text += t) };
    expect(await runCli(['audit', 'export', '--since', '2026-01-01T00:00:00Z'], env, { stdout: new SlowStdout(), stderr })).toBe(0);
    runs.push({ args: ['audit', 'export'], ok: true, stdout: text, stderr: stderr.text });
    expect(writes).toBe(3);
    expect(writesWhileFull).toBe(0);
    await expect.poll(() => lines(text).length).toBe(3 * EXPORT_BATCH);

    const broken = new Writable({ write: (_chunk, _encoding, done) => done(Object.assign(new Error('write EPIPE'), { code: 'EPIPE' })) });
    const failed = { text: '', write: (t: string) => (failed.text += t) };
    expect(await runCli(['audit', 'export', '--since', '2026-01-01T00:00:00Z'], env, { stdout: broken, stderr: failed })).toBe(1);
    expect(failed.text).toMatch(/^tessera: export stopped after \d+ events: write EPIPE\n$/);
  });
});
