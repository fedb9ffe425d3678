/** Operations on clients shared by the CLI and the admin API: each one change, with its audit row. */
import { randomUUID } from 'node:crypto';

import type { Transaction } from 'kysely';

import { epochSeconds, type Clock } from '../clock.js';
import { auditEvent, type AuditLog } from '../audit/audit-log.js';
import type { Database, Db } from '../db/database.js';
import type { RequestSource } from '../http/request-context.js';
import { InvalidSettingError, validateNewClient, type ClientSettings, type ClientSettingsInput, type SettingLimits } from './client-settings.js';
import { lastEventTime } from '../audit/audit-event.repository.js';
import { DuplicateClientError, deleteClientRow, expireSecret, expireSecretsAfter, findClient, findSecret, insertClient, insertSecret, updateClient, validSecretIds } from './client.repository.js';
import { presentClient, toClientRow, type Client } from './client.js';
import { generateSecret, type SecretHasher } from './secret.js';

export interface ClientServiceDeps {
  readonly db: Db;
  readonly hasher: SecretHasher;
  readonly clock: Clock;
  readonly limits: SettingLimits;
  readonly auditLog: AuditLog;
  /** Who acts, for the audit log: `cli`, or the admin client's id. */
  readonly actor: string;
  /** The admin API request that acts, for the audit log. */
  readonly source?: RequestSource;
  /** Called after every committed change to a client or its secrets: caches drop the client (client-changes.ts). */
  readonly clientChanged: (clientId: string) => void | Promise<void>;
}

export interface CreatedClient {
  readonly client: Client;
  /** The plaintext secret, to be shown to the operator exactly once. */
  readonly clientSecret: string;
}

/** The settings part of a client: everything an operator chooses. */
function settingsOf({ clientId: _id, ...settings }: ClientSettings): Omit<Client, 'clientId' | 'tokensRevokedBefore' | 'createdAt' | 'updatedAt'> {
  return settings;
}

/** Validates the settings, generates the id and secret, and stores the client with the secret's hash. */
export async function createClient(deps: ClientServiceDeps, input: ClientSettingsInput): Promise<CreatedClient> {
  const settings = validateNewClient(input, deps.limits);
  const now = epochSeconds(deps.clock);
  const clientId = settings.clientId ?? randomUUID();
  const secret = generateSecret();
  const client: Client = { ...settingsOf(settings), clientId, tokensRevokedBefore: null, createdAt: now, updatedAt: now };
  const hash = await deps.hasher.hash(secret.value);
  await change(deps, clientId, async (trx) => {
    if (settings.clientId !== undefined) {
      // Tokens name their client by id only: a new client under a recently deleted id could be
      // taken for the old one by a gateway that verifies offline, so the id waits until every
      // token of the old client has expired. Read in the transaction: a delete cannot slip in.
      const deletedAt = await lastEventTime(trx, clientId, 'client.deleted');
      if (deletedAt !== undefined && deletedAt + deps.limits.maxAccessTokenTtl * 1000 > deps.clock.now()) {
        throw new DuplicateClientError(`client_id ${clientId} was deleted less than ACCESS_TOKEN_MAX_TTL ago; its tokens may still be valid`);
      }
    }
    await insertClient(trx, toClientRow(client), { id: secret.id, client_id: clientId, hash, created_at: now, expires_at: null, last_used_at: null });
    return { result: undefined, event: { type: 'client.created', details: { fields: Object.keys(input).filter((k) => input[k as keyof ClientSettingsInput] !== undefined) } } };
  });
  return { client, clientSecret: secret.value };
}

export class UnknownClientError extends Error {
  readonly code = 'ERR_UNKNOWN_CLIENT';
}

/** A year: the longest a rotated-out secret may keep working. */
const MAX_SECRET_OVERLAP = 31_536_000;

/**
 * Issues a new secret. The newest previous secret keeps working for `previousSecretExpiresIn`
 * seconds (0 revokes it at once), so a workload can roll over without downtime; any older secret
 * stops at once, so a client never holds more than two.
 */
export async function rotateSecret(deps: ClientServiceDeps, clientId: string, previousSecretExpiresIn: number): Promise<string> {
  if (!Number.isSafeInteger(previousSecretExpiresIn) || previousSecretExpiresIn < 0 || previousSecretExpiresIn > MAX_SECRET_OVERLAP) {
    throw new InvalidSettingError('previous_secret_expires_in', `previous_secret_expires_in must be a whole number of seconds between 0 and ${MAX_SECRET_OVERLAP}`);
  }
  const secret = generateSecret();
  const hash = await deps.hasher.hash(secret.value);
  await change(deps, clientId, async (trx) => {
    // Once the write lock is held: the overlap runs from when the rotation takes effect.
    const now = epochSeconds(deps.clock);
    if (!(await findClient(trx, clientId))) throw new UnknownClientError(`no client ${clientId}`);
    const [previous] = await validSecretIds(trx, clientId, now);
    await expireSecretsAfter(trx, clientId, now, previous);
    if (previous !== undefined) await expireSecretsAfter(trx, clientId, now + previousSecretExpiresIn);
    await insertSecret(trx, { id: secret.id, client_id: clientId, hash, created_at: now, expires_at: null, last_used_at: null });
    return { result: undefined, event: { type: 'client.secret_rotated', details: { previous_secret_expires_in: previousSecretExpiresIn } } };
  });
  return secret.value;
}

/** What an operator's change did: its result, and the audit event it records (none: nothing changed). */
interface Change<T> {
  readonly result: T;
  readonly event?: { readonly type: string; readonly details?: Record<string, unknown> } | undefined;
}

/**
 * Runs an operator's change in one write transaction together with its audit row, so that neither
 * lands without the other. Write transactions run one at a time (db/database.ts), so a change
 * cannot land between the read and the write of another (re-enabling a client just disabled, say).
 * Once committed, caches forget the client and the row is mirrored as a log line.
 */
async function change<T>(deps: ClientServiceDeps, clientId: string, work: (trx: Transaction<Database>) => Promise<Change<T>>): Promise<T> {
  let logLine: (() => void) | undefined;
  const result = await deps.db.transaction().execute(async (trx) => {
    const { result, event } = await work(trx);
    if (event) {
      const details = { actor: deps.actor, ...event.details };
      logLine = await deps.auditLog.recordIn(trx, auditEvent({ type: event.type, outcome: 'success', client_id: clientId, ...deps.source, details }));
    }
    return result;
  });
  if (logLine) {
    await deps.clientChanged(clientId);
    logLine();
  }
  return result;
}

/**
 * A disabled client can neither get tokens nor authenticate. Disabling revokes every token issued
 * up to then, as revoke-tokens does, and so does enabling a disabled client: enabling it once a
 * leaked secret is rotated must bring back neither the tokens issued to whoever held it nor any
 * that an instance whose cache had not yet seen the disable issued meanwhile. Enabling a client
 * that is enabled revokes nothing.
 */
export async function setClientEnabled(deps: ClientServiceDeps, clientId: string, enabled: boolean): Promise<void> {
  await change(deps, clientId, async (trx) => {
    const current = await findClient(trx, clientId);
    if (!current) throw new UnknownClientError(`no client ${clientId}`);
    const now = epochSeconds(deps.clock);
    const revoke = !enabled || !current.enabled;
    await updateClient(trx, clientId, { enabled: enabled ? 1 : 0, ...(revoke ? { tokens_revoked_before: now } : {}), updated_at: now });
    const details = revoke ? { revoked_before: now } : undefined;
    return { result: undefined, event: { type: enabled ? 'client.enabled' : 'client.disabled', details } };
  });
}

/** Every token of the client issued up to now (same second included) becomes inactive. */
export async function revokeClientTokens(deps: ClientServiceDeps, clientId: string): Promise<number> {
  return change(deps, clientId, async (trx) => {
    // Read once the write lock is held: tokens issued while this waited for it are revoked too.
    const now = epochSeconds(deps.clock);
    if (!(await updateClient(trx, clientId, { tokens_revoked_before: now, updated_at: now }))) throw new UnknownClientError(`no client ${clientId}`);
    return { result: now, event: { type: 'client.tokens_revoked', details: { revoked_before: now } } };
  });
}

/** Deletes the client and its secrets; its outstanding tokens become inactive. */
export async function deleteClient(deps: ClientServiceDeps, clientId: string): Promise<void> {
  await change(deps, clientId, async (trx) => {
    if (!(await deleteClientRow(trx, clientId))) throw new UnknownClientError(`no client ${clientId}`);
    return { result: undefined, event: { type: 'client.deleted' } };
  });
}

/** The settings an operator may change after creation; client_id and times are not among them. */
export type ClientPatch = Omit<ClientSettingsInput, 'client_id'>;

/**
 * Applies a partial update. The merged settings are validated as a whole, so a patch cannot leave
 * the client inconsistent (e.g. a default scope outside its scopes). `precondition` runs on the
 * current client inside the same transaction: the admin API's If-Match check, free of races.
 */
export async function updateClientSettings(
  deps: ClientServiceDeps,
  clientId: string,
  patch: ClientPatch,
  precondition: (current: Client) => void = () => {},
): Promise<{ client: Client; changed: string[] }> {
  return change(deps, clientId, async (trx) => {
    const current = await findClient(trx, clientId);
    if (!current) throw new UnknownClientError(`no client ${clientId}`);
    precondition(current);

    const { client_id, created_at, updated_at, ...settings } = presentClient(current);
    // A lifetime stored under an ACCESS_TOKEN_MAX_TTL lowered since (tokens are capped by it anyway)
    // is judged again only when the patch changes it: disabling such a client must still work, also
    // from a console that sends the whole client back.
    const kept = patch.access_token_ttl === undefined || patch.access_token_ttl === current.accessTokenTtl ? (current.accessTokenTtl ?? 0) : 0;
    const merged = validateNewClient({ ...settings, ...patch }, { ...deps.limits, maxAccessTokenTtl: Math.max(deps.limits.maxAccessTokenTtl, kept) });
    const now = epochSeconds(deps.clock);
    const applied = settingsOf(merged);
    // As setClientEnabled: disabling or enabling revokes the tokens issued so far.
    const revoked = current.enabled !== applied.enabled ? { tokensRevokedBefore: now } : {};
    const next: Client = { ...current, ...applied, ...revoked, updatedAt: now };
    const before = presentClient(current) as unknown as Record<string, unknown>;
    const after = presentClient(next) as unknown as Record<string, unknown>;
    const changed = Object.keys(after).filter((k) => k !== 'updated_at' && JSON.stringify(before[k]) !== JSON.stringify(after[k]));
    if (changed.length > 0) {
      const { client_id: _id, created_at: _created, ...row } = toClientRow(next);
      await updateClient(trx, clientId, row);
    }
    const details = { changed, ...('tokensRevokedBefore' in revoked ? { revoked_before: now } : {}) };
    return { result: { client: changed.length > 0 ? next : current, changed }, event: changed.length > 0 ? { type: 'client.updated', details } : undefined };
  });
}

/** Revokes one secret at once; resolves to false when the client has no such secret. */
export async function revokeSecret(deps: ClientServiceDeps, clientId: string, secretId: string): Promise<boolean> {
  return change(deps, clientId, async (trx) => {
    const now = epochSeconds(deps.clock);
    const secret = await findSecret(trx, clientId, secretId);
    if (!secret) return { result: false };
    if (secret.expires_at === null || Number(secret.expires_at) > now) await expireSecret(trx, secretId, now);
    return { result: true, event: { type: 'client.secret_revoked', details: { secret_id: secretId } } };
  });
}

