/**
 * `tessera` CLI for bootstrap and recovery. It works directly on the configured database (the
 * server need not run), creating a new database's schema but leaving upgrades to `migrate`. With --json, stdout carries exactly
 * one JSON value; messages and errors go to stderr.
 */
import { existsSync } from 'node:fs';
import type { Writable } from 'node:stream';
import { parseArgs, type ParseArgsConfig } from 'node:util';

import { adminClientSettings } from '../admin/bootstrap.js';
import { parseDateTime, presentAuditEvent } from '../admin/audit-events.js';
import { presentKey } from '../admin/tokens-and-keys.js';
import { adminAudience } from '../admin/authorize.js';
import { listAuditEvents } from '../audit/audit-event.repository.js';
import { EXPORT_SETTLE_MS, auditEventPages } from '../audit/audit-export.js';
import { AuditLog } from '../audit/audit-log.js';
import { pruneAuditEvents } from '../audit/audit-retention.js';
import { writeAuditRows } from '../audit/audit-writer.js';
import { presentClient } from '../clients/client.js';
import { InvalidSettingError } from '../clients/client-settings.js';
import { findClient, listClients } from '../clients/client.repository.js';
import { DuplicateClientError } from '../clients/client.repository.js';
import {
  UnknownClientError,
  createClient,
  deleteClient,
  revokeClientTokens,
  rotateSecret,
  setClientEnabled,
  updateClientSettings,
  type ClientPatch,
  type ClientServiceDeps,
} from '../clients/client.service.js';
import { SecretHasher } from '../clients/secret.js';
import { systemClock } from '../clock.js';
import { ConfigError, auditRetentionTooShort, dialectOf, loadConfig } from '../config.js';
import { clientChangeAnnouncer } from '../clients/client-changes.js';
import { backupSqlite, openDatabase, type Db } from '../db/database.js';
import { MigrationError, migrateToLatest } from '../db/migrate.js';
import { KeyManager, auditKeyEvents, keyPolicy, listKeys } from '../keys/key-manager.js';
import { KeystoreError } from '../keys/keystore.js';
import { createLogger } from '../log.js';
import { effectiveSettings, formatSettings } from './config-check.js';

export interface CliIo {
  readonly stdout: { write(text: string): unknown };
  readonly stderr: { write(text: string): unknown };
}

const USAGE = `usage: tessera <command> [options]

commands:
  migrate                                  apply pending database migrations (other commands do not upgrade
                                           a database in use)
  backup <file>                            SQLite: a consistent, owner-only copy of the database, servers running
  clients create --name <name> [options]   create a client; prints its secret once
      --id <client_id>                     choose the id (default: a random UUID)
      --description <text>
      --scope "<a b>"                      scopes the client may request
      --default-scope "<a>"                granted when a request names none (default: --scope)
      --audience <uri>                     allowed audience; repeat for several
      --default-audience <uri>             used when a request names none (default: the only --audience)
      --introspect <uri>|"*"               audience whose tokens it may introspect and revoke; repeat for several
      --lifetime <seconds>                 access-token lifetime (default: ACCESS_TOKEN_TTL)
      --token-rate-limit <n>               tokens per minute, 0 for no limit (default: TOKEN_RATE_LIMIT)
      --auth-method client_secret_basic|client_secret_post   (default: client_secret_basic)
      --admin                              an admin client: may get tokens for <ISSUER>/admin with admin:read admin:write
      --disabled                           create it disabled
  clients update <client_id> [options]     change settings: the options of create except --id, --admin and --disabled
  clients list                             list clients (never secrets)
  clients get <client_id>                  show one client
  clients rotate-secret <client_id> [--previous-expires-in <seconds>]
                                           new secret; the previous one works for 86400 s by default (0: revoke now)
  clients disable <client_id>              refuse its credentials; its tokens so far are revoked
  clients enable <client_id>               accept its credentials again; no earlier token comes back
  clients delete <client_id>               delete it and its secrets; its tokens become inactive
  clients revoke-tokens <client_id>        make every token it holds now inactive
  keys list                                signing keys: kid, state, times (never key material)
  keys rotate [--now]                      a next key, published now, signing after JWKS_MAX_AGE (--now: at once)
  keys revoke <kid>                        emergency: out of the JWKS, its tokens inactive, a replacement signs
  audit tail [--limit <n>] [--client-id <id>] [--type <type>]
                                           the latest audit events, oldest first (default 20)
  audit export --since <date-time> [--until <date-time>] [--format jsonl]
                                           every audit event from --since (inclusive) to --until (exclusive),
                                           oldest first, one JSON object per line; RFC 3339 times, e.g. 2026-11-23T20:00:00Z;
                                           stops a minute before now (later events may still be committing) and
                                           prints where the next export starts
  audit prune [--older-than-days <n>]      delete audit events older than n days now (default: AUDIT_RETENTION_DAYS)
  config check                             validate the environment as the server does; show every setting
                                           and where it came from (credentials masked); opens no database or key

every command but audit export takes --json: one JSON value on stdout.
an id or kid that begins with "-" goes after "--", e.g. tessera keys revoke -- -g9_yLw…
environment: the server's. DATABASE_URL, ISSUER (audience of --admin clients), KEYS_DIR, ACCESS_TOKEN_TTL,
ACCESS_TOKEN_MAX_TTL, JWKS_MAX_AGE, KEY_RELOAD_INTERVAL, CLOCK_LEEWAY, ARGON2_*, AUDIT_RETENTION_DAYS (see README).
`;

class UsageError extends Error {}

const OPTIONS = {
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  name: { type: 'string' },
  id: { type: 'string' },
  description: { type: 'string' },
  scope: { type: 'string' },
  'default-scope': { type: 'string' },
  audience: { type: 'string', multiple: true },
  introspect: { type: 'string', multiple: true },
  'default-audience': { type: 'string' },
  lifetime: { type: 'string' },
  'token-rate-limit': { type: 'string' },
  'auth-method': { type: 'string' },
  disabled: { type: 'boolean' },
  admin: { type: 'boolean' },
  now: { type: 'boolean' },
  limit: { type: 'string' },
  'client-id': { type: 'string' },
  type: { type: 'string' },
  'previous-expires-in': { type: 'string' },
  'older-than-days': { type: 'string' },
  since: { type: 'string' },
  until: { type: 'string' },
  format: { type: 'string' },
} satisfies ParseArgsConfig['options'];

type Values = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true }>>['values'];
type Flag = keyof typeof OPTIONS;

const SETTING_FLAGS: readonly Flag[] = ['name', 'description', 'scope', 'default-scope', 'audience', 'introspect', 'default-audience', 'lifetime', 'token-rate-limit', 'auth-method'];

/**
 * The flags each command takes besides --json and --help: any other is a usage error, so that
 * `clients update x --disabled` fails instead of reporting "x unchanged".
 */
const COMMAND_FLAGS: Readonly<Record<string, readonly Flag[]>> = {
  migrate: [],
  backup: [],
  'clients create': [...SETTING_FLAGS, 'id', 'admin', 'disabled'],
  'clients update': SETTING_FLAGS,
  'clients list': [],
  'clients get': [],
  'clients rotate-secret': ['previous-expires-in'],
  'clients disable': [],
  'clients enable': [],
  'clients delete': [],
  'clients revoke-tokens': [],
  'keys list': [],
  'keys rotate': ['now'],
  'keys revoke': [],
  'audit tail': ['limit', 'client-id', 'type'],
  'audit export': ['since', 'until', 'format'],
  'audit prune': ['older-than-days'],
  'config check': [],
};

function checkFlags(command: string, values: Values): void {
  const allowed = COMMAND_FLAGS[command];
  if (allowed === undefined) throw new UsageError(`unknown command "${command}"`);
  // Before the database is opened: a usage error changes nothing, not even the schema.
  if (values.json && command === 'audit export') throw new UsageError('audit export writes JSON lines (--format jsonl); --json does not apply');
  for (const flag of Object.keys(values) as Flag[]) {
    if (flag !== 'json' && flag !== 'help' && !allowed.includes(flag)) throw new UsageError(`--${flag} does not apply to "${command}"`);
  }
}

function wholeNumber(flag: string, raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  if (!/^\d+$/.test(raw)) throw new UsageError(`--${flag} must be a whole number`);
  return Number(raw);
}

/** Runs one CLI invocation; resolves to the process exit code. */
export async function runCli(argv: readonly string[], env: NodeJS.ProcessEnv, io: CliIo): Promise<number> {
  let db: Db | undefined;
  let issuer = '';
  try {
    const { values, positionals } = parseArgs({ args: [...argv], options: OPTIONS, allowPositionals: true, strict: true });
    const [group, action, ...rest] = positionals;
    const backupTo = group === 'backup' ? action : undefined;
    if (values.help || group === undefined) {
      io.stdout.write(USAGE);
      return values.help ? 0 : 2;
    }
    const command = group === 'backup' ? group : [group, action].filter(Boolean).join(' ');
    checkFlags(command, values);
    // Before anything opens the database: checking the configuration needs none.
    if (command === 'config check') return configCheck(env, values, io);

    const config = loadConfig(env);
    // Before migrating: a backup is what an operator takes before an upgrade.
    if (command === 'backup') return await backupCommand(config.databaseUrl, required(backupTo, 'file'), values, io);
    issuer = config.issuer;
    db = openDatabase(config.databaseUrl, { poolSize: 1 });
    const { applied, newer } = await migrateToLatest(db, { upgrade: command === 'migrate' });
    const deps: ClientServiceDeps = {
      db,
      hasher: new SecretHasher(config.argon2, config.argon2Limits),
      clock: systemClock,
      limits: { maxAccessTokenTtl: config.accessTokenMaxTtl },
      // The audit rows are what matters here; their log-line mirror would only clutter the terminal.
      auditLog: new AuditLog(writeAuditRows(db), createLogger('silent'), systemClock),
      actor: 'cli',
      // Servers on PostgreSQL hear of the change at once, on SQLite within their CLIENT_CACHE_TTL.
      clientChanged: clientChangeAnnouncer(config.databaseUrl, db, () => {}, createLogger('silent')),
    };
    const openKeys = () => KeyManager.open(keyPolicy(config, systemClock), auditKeyEvents(deps.auditLog), undefined, { existing: true });
    const out = (json: unknown, text: string) => io.stdout.write(values.json ? `${JSON.stringify(json, null, 2)}\n` : text);

    switch (command) {
      case 'migrate':
        out(
          { applied, newer },
          applied.length ? `applied: ${applied.join(', ')}\n` : newer.length ? `the database schema is newer than this version (${newer.join(', ')}); nothing to apply\n` : 'database is up to date\n',
        );
        return 0;
      case 'clients create':
        await createCommand(deps, values, out, io, issuer);
        return 0;
      case 'clients update': {
        const clientId = required(rest[0], 'client_id');
        const { client, changed } = await updateClientSettings(deps, clientId, settingsFrom(values));
        out(presentClient(client), changed.length ? `${clientId} updated: ${changed.join(', ')}\n` : `${clientId} unchanged\n`);
        return 0;
      }
      case 'keys list': {
        const items = (await listKeys(config.keysDir)).map(presentKey);
        out(items, items.map((k) => `${k.kid}\t${k.state}\t${k.created_at}\n`).join(''));
        return 0;
      }
      case 'keys rotate': {
        const result = await (await openKeys()).rotate({ now: values.now ?? false, actor: 'cli' });
        const key = presentKey(result.key);
        out({ ...key, pending_rotation: result.pending }, `${key.kid}\t${key.state}${key.activate_after ? `\tactivates after ${key.activate_after}` : ''}\n`);
        if (values.now) {
          io.stderr.write('The new key signs now. Gateways that cached the JWKS before it was published cannot verify its tokens until they refresh (up to JWKS_MAX_AGE).\n');
        } else if (result.pending) {
          io.stderr.write('A rotation was already pending; no new key was created.\n');
        }
        return 0;
      }
      case 'keys revoke': {
        const kid = required(rest[0], 'kid');
        const key = presentKey(await (await openKeys()).revoke(kid, 'cli'));
        out(key, `${kid} revoked: removed from the JWKS, its tokens are inactive\n`);
        return 0;
      }
      case 'audit tail': {
        const limit = Number(values.limit ?? 20);
        if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw new UsageError('--limit must be a whole number from 1 to 1000');
        const rows = await listAuditEvents(db, { limit, clientId: values['client-id'], type: values.type });
        const events = rows.reverse().map(presentAuditEvent);
        out(events, events.map((e) => `${e.occurred_at} ${e.type} ${e.outcome} ${e.client_id ?? '-'}${e.reason ? ` (${e.reason})` : ''}\n`).join(''));
        return 0;
      }
      case 'audit export':
        return await exportCommand(db, values, io);
      case 'audit prune': {
        const days = wholeNumber('older-than-days', values['older-than-days']) ?? config.auditRetentionDays;
        if (days < 1 || days > 36_500) {
          throw new UsageError(
            values['older-than-days'] === undefined
              ? 'audit prune needs --older-than-days <n> or AUDIT_RETENTION_DAYS of at least 1 (AUDIT_RETENTION_DAYS is 0: keep every event)'
              : '--older-than-days must be a whole number from 1 to 36500',
          );
        }
        const tooShort = auditRetentionTooShort(days, config.accessTokenMaxTtl, config.clockLeeway);
        if (tooShort) throw new UsageError(`--older-than-days ${tooShort}`);
        const { deleted, cutoff } = await pruneAuditEvents(db, deps.auditLog, systemClock, { olderThanDays: days, actor: 'cli' });
        const before = new Date(cutoff).toISOString();
        out({ deleted, cutoff: before, older_than_days: days }, `deleted ${deleted} audit event${deleted === 1 ? '' : 's'} older than ${before}\n`);
        return 0;
      }
      case 'clients list': {
        const clients = (await listClients(db)).map(presentClient);
        out(clients, clients.map((c) => `${c.client_id}\t${c.client_name}\t${c.enabled ? 'enabled' : 'disabled'}\n`).join(''));
        return 0;
      }
      case 'clients get': {
        const client = await findClient(db, required(rest[0], 'client_id'));
        if (!client) throw new UnknownClientError(`no client ${rest[0]}`);
        out(presentClient(client), `${JSON.stringify(presentClient(client), null, 2)}\n`);
        return 0;
      }
      case 'clients rotate-secret': {
        const clientId = required(rest[0], 'client_id');
        const previousExpiresIn = wholeNumber('previous-expires-in', values['previous-expires-in']) ?? 86_400;
        const secret = await rotateSecret(deps, clientId, previousExpiresIn);
        out(
          { client_id: clientId, client_secret: secret, previous_secret_expires_in: previousExpiresIn },
          `client_secret: ${secret}\n`,
        );
        if (!values.json) io.stderr.write('Store the new secret now: it cannot be shown again.\n');
        return 0;
      }
      case 'clients disable':
      case 'clients enable': {
        const clientId = required(rest[0], 'client_id');
        await setClientEnabled(deps, clientId, action === 'enable');
        out({ client_id: clientId, enabled: action === 'enable' }, `${clientId} ${action}d\n`);
        return 0;
      }
      case 'clients delete': {
        const clientId = required(rest[0], 'client_id');
        await deleteClient(deps, clientId);
        out({ client_id: clientId, deleted: true }, `${clientId} deleted\n`);
        return 0;
      }
      case 'clients revoke-tokens': {
        const clientId = required(rest[0], 'client_id');
        const before = await revokeClientTokens(deps, clientId);
        const at = new Date(before * 1000).toISOString();
        out({ client_id: clientId, tokens_revoked_before: at }, `tokens of ${clientId} issued up to ${at} are revoked\n`);
        return 0;
      }
      default:
        throw new UsageError(`unknown command "${command}"`);
    }
  } catch (err) {
    if (err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      io.stderr.write(`tessera: ${(err as Error).message}\n\n${USAGE}`);
      return 2;
    }
    if (err instanceof InvalidSettingError) {
      io.stderr.write(`tessera: invalid ${err.field}: ${err.message}\n`);
      return 1;
    }
    if (err instanceof ConfigError || err instanceof DuplicateClientError || err instanceof UnknownClientError || err instanceof KeystoreError || err instanceof MigrationError) {
      io.stderr.write(`tessera: ${err.message}\n`);
      return 1;
    }
    // An operator's mistake or an outage, not a bug: no stack trace.
    if (databaseUnavailable(err)) {
      io.stderr.write(`tessera: cannot use the database (DATABASE_URL): ${(err as Error).message}\n`);
      return 1;
    }
    throw err;
  } finally {
    await db?.destroy();
  }
}

/** A SQLite file that cannot be opened or written, or a PostgreSQL server that cannot be reached or refuses the login. */
function databaseUnavailable(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== 'string') return false;
  return /^(SQLITE_(CANTOPEN|NOTADB|PERM|READONLY|AUTH|IOERR|BUSY|FULL)(_[A-Z_]+)?|ECONNREFUSED|ECONNRESET|ENOTFOUND|EAI_AGAIN|ETIMEDOUT|EHOSTUNREACH|28P01|28000|3D000)$/.test(code);
}

async function backupCommand(databaseUrl: string, file: string, values: Values, io: CliIo): Promise<number> {
  if (dialectOf(databaseUrl) === 'postgres') {
    io.stderr.write('tessera: on PostgreSQL, back up with pg_dump (README "Upgrades and backups")\n');
    return 1;
  }
  if (existsSync(file)) {
    io.stderr.write(`tessera: ${file} exists; a backup never writes over a file\n`);
    return 1;
  }
  if (!existsSync(databaseUrl)) {
    io.stderr.write(`tessera: cannot use the database (DATABASE_URL): there is no ${databaseUrl}\n`);
    return 1;
  }
  await backupSqlite(databaseUrl, file);
  io.stdout.write(values.json ? `${JSON.stringify({ backup: file })}\n` : `backed up to ${file}\n`);
  return 0;
}

function configCheck(env: NodeJS.ProcessEnv, values: Values, io: CliIo): number {
  try {
    const settings = effectiveSettings(loadConfig(env), env);
    io.stdout.write(values.json ? `${JSON.stringify({ valid: true, settings }, null, 2)}\n` : `configuration is valid\n${formatSettings(settings)}`);
    return 0;
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    // The problems are the check's answer: on stdout as JSON for machines, on stderr as always.
    if (values.json) io.stdout.write(`${JSON.stringify({ valid: false, problems: err.problems }, null, 2)}\n`);
    io.stderr.write(`tessera: ${err.message}\n`);
    return 1;
  }
}

function dateTime(flag: string, raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  const ms = parseDateTime(raw);
  if (ms === undefined) throw new UsageError(`--${flag} must be an RFC 3339 date-time, e.g. 2026-11-23T20:00:00Z, got ${JSON.stringify(raw)}`);
  return ms;
}

/**
 * Writes audit events as JSON lines, a page at a time, waiting whenever stdout's buffer is full, so
 * memory stays flat however many rows there are. If stdout fails (a closed pipe), stops.
 */
async function exportCommand(db: Db, values: Values, io: CliIo): Promise<number> {
  const format = values.format ?? 'jsonl';
  if (format !== 'jsonl') throw new UsageError(`--format must be jsonl (the only export format), got ${JSON.stringify(format)}`);
  const since = dateTime('since', values.since);
  if (since === undefined) throw new UsageError('audit export needs --since <date-time>, e.g. --since 2026-11-01T00:00:00Z');
  const requestedUntil = dateTime('until', values.until);
  if (requestedUntil !== undefined && requestedUntil <= since) throw new UsageError('--until must be later than --since');
  const until = Math.min(requestedUntil ?? Infinity, Date.now() - EXPORT_SETTLE_MS);

  const stream = typeof (io.stdout as Partial<Writable>).once === 'function' ? (io.stdout as Writable) : undefined;
  let failed: Error | undefined;
  const onError = (err: Error) => {
    failed ??= err;
  };
  stream?.on('error', onError);
  let exported = 0;
  try {
    for await (const rows of auditEventPages(db, { since, until: Math.max(since, until) })) {
      if (failed) break;
      const written = io.stdout.write(rows.map((row) => `${JSON.stringify(presentAuditEvent(row))}\n`).join(''));
      exported += rows.length;
      if (written === false && stream) await drained(stream);
    }
  } finally {
    stream?.off('error', onError);
  }
  if (failed) {
    io.stderr.write(`tessera: export stopped after ${exported} events: ${failed.message}\n`);
    return 1;
  }
  // Where this export ended is where the next one starts: together they miss and repeat nothing.
  const next = new Date(Math.max(since, until)).toISOString();
  io.stderr.write(`exported ${exported} audit event${exported === 1 ? '' : 's'}; the next export starts at --since ${next}\n`);
  return 0;
}

/** Resolves when `stream` can take more, or has failed or closed (the caller checks which). */
function drained(stream: Writable): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      stream.off('drain', done);
      stream.off('error', done);
      stream.off('close', done);
      resolve();
    };
    stream.on('drain', done);
    stream.on('error', done);
    stream.on('close', done);
  });
}

function required(value: string | undefined, name: string): string {
  if (value === undefined) throw new UsageError(`missing <${name}>`);
  return value;
}

/** The settings named by flags; flags not given are left out, so `update` changes only those. */
function settingsFrom(values: Values): ClientPatch {
  const settings: ClientPatch = {
    client_name: values.name,
    description: values.description,
    scope: values.scope,
    default_scope: values['default-scope'],
    audience: values.audience,
    default_audience: values['default-audience'],
    introspection_audiences: values.introspect,
    token_endpoint_auth_method: values['auth-method'],
    access_token_ttl: wholeNumber('lifetime', values.lifetime),
    token_rate_limit: wholeNumber('token-rate-limit', values['token-rate-limit']),
  };
  return Object.fromEntries(Object.entries(settings).filter(([, v]) => v !== undefined));
}

async function createCommand(deps: ClientServiceDeps, values: Values, out: (json: unknown, text: string) => unknown, io: CliIo, issuer: string): Promise<void> {
  if (values.name === undefined) throw new UsageError('clients create needs --name <name>');
  const settings = settingsFrom(values);
  if (values.admin) {
    const admin = adminClientSettings(issuer);
    settings.audience = [...new Set([...(settings.audience ?? []), ...admin.audience])];
    settings.scope = [...new Set([...(settings.scope ?? '').split(' ').filter(Boolean), ...admin.scope.split(' ')])].join(' ');
    if (settings.default_audience === undefined && settings.audience.length > 1) settings.default_audience = adminAudience(issuer);
  }
  const { client, clientSecret } = await createClient(deps, { ...settings, client_id: values.id, enabled: !values.disabled });
  const { client_id, ...shown } = presentClient(client);
  const json = { client_id, client_secret: clientSecret, ...shown };
  out(json, `client_id:     ${client.clientId}\nclient_secret: ${clientSecret}\n`);
  if (!values.json) io.stderr.write('Store the secret now: it cannot be shown again.\n');
}
