/** Operations on clients shared by the CLI and (later) the admin API. */
import { randomUUID } from 'node:crypto';

import { epochSeconds, type Clock } from '../clock.js';
import type { Db } from '../db/database.js';
import { validateNewClient, type ClientSettingsInput, type SettingLimits } from './client-settings.js';
import { expireSecretsAfter, findClient, insertClient, insertSecret, validSecretIds } from './client.repository.js';
import type { Client } from './client.js';
import { generateSecret, type SecretHasher } from './secret.js';

export interface ClientServiceDeps {
  readonly db: Db;
  readonly hasher: SecretHasher;
  readonly clock: Clock;
  readonly limits: SettingLimits;
}

export interface CreatedClient {
  readonly client: Client;
  /** The plaintext secret, to be shown to the operator exactly once. */
  readonly clientSecret: string;
}

/** Validates the settings, generates the id and secret, and stores the client with the secret's hash. */
export async function createClient(deps: ClientServiceDeps, input: ClientSettingsInput): Promise<CreatedClient> {
  const settings = validateNewClient(input, deps.limits);
  const now = epochSeconds(deps.clock);
  const clientId = settings.clientId ?? randomUUID();
  const secret = generateSecret();

  const client: Client = {
    clientId,
    clientName: settings.clientName,
    description: settings.description,
    scopes: settings.scopes,
    defaultScopes: settings.defaultScopes,
    audiences: settings.audiences,
    defaultAudience: settings.defaultAudience,
    grantTypes: settings.grantTypes,
    authMethod: settings.authMethod,
    accessTokenTtl: settings.accessTokenTtl,
    enabled: settings.enabled,
    createdAt: now,
    updatedAt: now,
  };

  await insertClient(
    deps.db,
    {
      client_id: clientId,
      client_name: client.clientName,
      description: client.description,
      scope: client.scopes.join(' '),
      default_scope: client.defaultScopes.join(' ') || null,
      audience: JSON.stringify(client.audiences),
      default_audience: client.defaultAudience,
      grant_types: JSON.stringify(client.grantTypes),
      token_endpoint_auth_method: client.authMethod,
      access_token_ttl: client.accessTokenTtl,
      enabled: client.enabled ? 1 : 0,
      created_at: now,
      updated_at: now,
    },
    { id: secret.id, client_id: clientId, hash: await deps.hasher.hash(secret.value), created_at: now, expires_at: null, last_used_at: null },
  );

  return { client, clientSecret: secret.value };
}

export class UnknownClientError extends Error {
  readonly code = 'ERR_UNKNOWN_CLIENT';
}

/**
 * Issues a new secret. The newest previous secret keeps working for `previousSecretExpiresIn`
 * seconds (0 revokes it at once), so a workload can roll over without downtime; any older secret
 * stops at once, so a client never holds more than two.
 */
export async function rotateSecret(deps: ClientServiceDeps, clientId: string, previousSecretExpiresIn: number): Promise<string> {
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
  return secret.value;
}
