/** Operations on clients shared by the CLI and (later) the admin API. */
import { randomUUID } from 'node:crypto';

import { epochSeconds, type Clock } from '../clock.js';
import { auditEvent, type AuditLog } from '../audit/audit-log.js';
import type { Db } from '../db/database.js';
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
  if (settings.clientId !== undefined) {
    // Tokens name their client by id only: a new client under a recently deleted id could be
    // taken for the old one by a gateway that verifies offline, so the id waits until every
    // token of the old client has expired.
    const deletedAt = await lastEventTime(deps.db, clientId, 'client.deleted');
    if (deletedAt !== undefined && deletedAt + deps.limits.maxAccessTokenTtl * 1000 > deps.clock.now()) {
      throw new DuplicateClientError(`client_id ${clientId} was deleted less than ACCESS_TOKEN_MAX_TTL ago; its tokens may still be valid`);
    }
  }
  const secret = generateSecret();
  const client: Client = { ...settingsOf(settings), clientId, tokensRevokedBefore: null, createdAt: now, updatedAt: now };
  await insertClient(deps.db, toClientRow(client), {
    id: secret.id,
    client_id: clientId,
    hash: await deps.hasher.hash(secret.value),
    created_at: now,
    expires_at: null,
    last_used_at: null,
  });

  await recordChange(deps, 'client.created', clientId, { fields: Object.keys(input).filter((k) => input[k as keyof ClientSettingsInput] !== undefined) });
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
  const now = epochSeconds(deps.clock);
  const secret = generateSecret();
  const hash = await deps.hasher.hash(secret.value);
  await deps.db.transaction().execute(async (trx) => {
    if (!(await findClient(trx, clientId))) throw new UnknownClientError(`no client ${clientId}`);
    const [previous] = await validSecretIds(trx, clientId, now);
    await expireSecretsAfter(trx, clientId, now, previous);
    if (previous !== undefined) await expireSecretsAfter(trx, clientId, now + previousSecretExpiresIn);
    await insertSecret(trx, { id: secret.id, client_id: clientId, hash, created_at: now, expires_at: null, last_used_at: null });
  });
  await recordChange(deps, 'client.secret_rotated', clientId, { previous_secret_expires_in: previousSecretExpiresIn });
  return secret.value;
}

/** After an operator's change to a client: caches forget it at once, and one audit row. */
async function recordChange(deps: ClientServiceDeps, type: string, clientId: string, details: Record<string, unknown> = {}): Promise<void> {
  await deps.clientChanged(clientId);
  return deps.auditLog.record(auditEvent({ type, outcome: 'success', client_id: clientId, ...deps.source, details: { actor: deps.actor, ...details } }));
}

/**
 * A transaction even for one statement: write transactions run one at a time (db/database.ts), so
 * this cannot land between the read and the write of a concurrent updateClientSettings, which
 * would then write the old value back (re-enabling a client just disabled, say).
 */
async function updateOrThrow(deps: ClientServiceDeps, clientId: string, update: Parameters<typeof updateClient>[2]): Promise<void> {
  const updated = await deps.db.transaction().execute((trx) => updateClient(trx, clientId, { ...update, updated_at: epochSeconds(deps.clock) }));
  if (!updated) throw new UnknownClientError(`no client ${clientId}`);
}

/** A disabled client can neither get tokens nor authenticate, and its outstanding tokens are inactive. */
export async function setClientEnabled(deps: ClientServiceDeps, clientId: string, enabled: boolean): Promise<void> {
  await updateOrThrow(deps, clientId, { enabled: enabled ? 1 : 0 });
  await recordChange(deps, enabled ? 'client.enabled' : 'client.disabled', clientId);
}

/** Every token of the client issued up to now (same second included) becomes inactive. */
export async function revokeClientTokens(deps: ClientServiceDeps, clientId: string): Promise<number> {
  const now = epochSeconds(deps.clock);
  await updateOrThrow(deps, clientId, { tokens_revoked_before: now });
  await recordChange(deps, 'client.tokens_revoked', clientId, { revoked_before: now });
  return now;
}

/** Deletes the client and its secrets; its outstanding tokens become inactive. */
export async function deleteClient(deps: ClientServiceDeps, clientId: string): Promise<void> {
  // In a transaction, so it runs between other writes, not inside one (updateOrThrow says why).
  if (!(await deps.db.transaction().execute((trx) => deleteClientRow(trx, clientId)))) throw new UnknownClientError(`no client ${clientId}`);
  await recordChange(deps, 'client.deleted', clientId);
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
  const result = await deps.db.transaction().execute(async (trx) => {
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
    const next: Client = { ...current, ...settingsOf(merged), updatedAt: now };
    const before = presentClient(current) as unknown as Record<string, unknown>;
    const after = presentClient(next) as unknown as Record<string, unknown>;
    const changed = Object.keys(after).filter((k) => k !== 'updated_at' && JSON.stringify(before[k]) !== JSON.stringify(after[k]));
    if (changed.length > 0) {
      const { client_id: _id, created_at: _created, ...row } = toClientRow(next);
      await updateClient(trx, clientId, row);
    }
    return { client: changed.length > 0 ? next : current, changed };
  });
  if (result.changed.length > 0) await recordChange(deps, 'client.updated', clientId, { changed: result.changed });
  return result;
}

/** Revokes one secret at once; resolves to false when the client has no such secret. */
export async function revokeSecret(deps: ClientServiceDeps, clientId: string, secretId: string): Promise<boolean> {
  const now = epochSeconds(deps.clock);
  const found = await deps.db.transaction().execute(async (trx) => {
    const secret = await findSecret(trx, clientId, secretId);
    if (secret && (secret.expires_at === null || Number(secret.expires_at) > now)) await expireSecret(trx, secretId, now);
    return secret !== undefined;
  });
  if (!found) return false;
  await recordChange(deps, 'client.secret_revoked', clientId, { secret_id: secretId });
  return true;
}

