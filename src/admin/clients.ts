/** /admin/clients: CRUD with ETag/If-Match, secrets, and wholesale token revocation. */
import { createHash } from 'node:crypto';

import type { Context } from 'koa';

import { listClientPage, listSecrets, findClient } from '../clients/client.repository.js';
import {
  createClient,
  deleteClient,
  revokeClientTokens,
  revokeSecret,
  rotateSecret,
  updateClientSettings,
  type ClientServiceDeps,
} from '../clients/client.service.js';
import { presentClient, type Client } from '../clients/client.js';
import { requestSource } from '../http/request-context.js';
import { paramsOf } from '../http/routes.js';
import { AdminError } from './admin-error.js';
import { adminActor } from './authorize.js';
import { parseClientCreate, parseClientPatch, parseSecretRotation } from './client-input.js';
import { decodeCursor, page, parseLimit, queryValue } from './paging.js';
import { readJson, readOptionalJson } from './read-json.js';

export interface AdminClientDeps {
  /** Client operations; the actor is filled in per request from the admin token. */
  readonly service: Omit<ClientServiceDeps, 'actor'>;
  readonly bodyLimit: number;
}

const iso = (seconds: number | null) => (seconds === null ? null : new Date(Number(seconds) * 1000).toISOString());

/** A strong ETag over everything the client JSON shows. */
export const clientEtag = (client: Client): string =>
  `"${createHash('sha256').update(JSON.stringify(presentClient(client))).digest('base64url')}"`;

export function clientHandlers({ service, bodyLimit }: AdminClientDeps) {
  const as = (ctx: Context): ClientServiceDeps => ({ ...service, actor: adminActor(ctx), source: requestSource(ctx) });
  const clientId = (ctx: Context) => paramsOf(ctx).client_id!;
  const respondClient = (ctx: Context, client: Client, status = 200) => {
    ctx.status = status;
    ctx.set('ETag', clientEtag(client));
    ctx.body = presentClient(client);
  };

  return {
    create: async (ctx: Context) => {
      const input = parseClientCreate(await readJson(ctx, bodyLimit));
      const { client, clientSecret } = await createClient(as(ctx), input);
      respondClient(ctx, client, 201);
      ctx.set('Location', `/admin/clients/${encodeURIComponent(client.clientId)}`);
      const { client_id, ...settings } = presentClient(client);
      ctx.body = { client_id, client_secret: clientSecret, ...settings };
    },

    list: async (ctx: Context) => {
      const limit = parseLimit(queryValue(ctx.query, 'limit'));
      const enabled = queryValue(ctx.query, 'enabled');
      if (enabled !== undefined && enabled !== 'true' && enabled !== 'false') throw AdminError.invalid('enabled', 'enabled must be true or false');
      const rows = await listClientPage(service.db, {
        limit: limit + 1,
        after: decodeCursor(queryValue(ctx.query, 'cursor')),
        namePrefix: queryValue(ctx.query, 'name_prefix'),
        enabled: enabled === undefined ? undefined : enabled === 'true',
      });
      ctx.body = page(rows, limit, (c) => c.clientId, presentClient);
    },

    get: async (ctx: Context) => {
      const client = await findClient(service.db, clientId(ctx));
      if (!client) throw AdminError.notFound('client');
      respondClient(ctx, client);
    },

    update: async (ctx: Context) => {
      const ifMatch = ctx.get('if-match');
      if (ifMatch === '') {
        throw new AdminError(428, 'precondition_required', 'send If-Match with the ETag of the client you read, so concurrent edits are not lost');
      }
      const patch = parseClientPatch(await readJson(ctx, bodyLimit));
      const { client } = await updateClientSettings(as(ctx), clientId(ctx), patch, (current) => {
        if (ifMatch !== '*' && !ifMatch.split(',').map((t) => t.trim()).includes(clientEtag(current))) {
          throw new AdminError(412, 'precondition_failed', 'the client changed since it was read; read it again and retry');
        }
      });
      respondClient(ctx, client);
    },

    remove: async (ctx: Context) => {
      await deleteClient(as(ctx), clientId(ctx));
      ctx.status = 204;
    },

    rotateSecret: async (ctx: Context) => {
      const raw = await readOptionalJson(ctx, bodyLimit);
      const previousSecretExpiresIn = parseSecretRotation(raw);
      const secret = await rotateSecret(as(ctx), clientId(ctx), previousSecretExpiresIn);
      ctx.status = 201;
      ctx.body = { client_id: clientId(ctx), client_secret: secret, previous_secret_expires_in: previousSecretExpiresIn };
    },

    listSecrets: async (ctx: Context) => {
      if (!(await findClient(service.db, clientId(ctx)))) throw AdminError.notFound('client');
      const rows = await listSecrets(service.db, clientId(ctx));
      ctx.body = {
        items: rows.map((r) => ({ id: r.id, created_at: iso(r.created_at), expires_at: iso(r.expires_at), last_used_at: iso(r.last_used_at) })),
      };
    },

    revokeSecret: async (ctx: Context) => {
      if (!(await findClient(service.db, clientId(ctx)))) throw AdminError.notFound('client');
      if (!(await revokeSecret(as(ctx), clientId(ctx), paramsOf(ctx).secret_id!))) throw AdminError.notFound('secret');
      ctx.status = 204;
    },

    revokeTokens: async (ctx: Context) => {
      const before = await revokeClientTokens(as(ctx), clientId(ctx));
      ctx.body = { client_id: clientId(ctx), tokens_revoked_before: iso(before) };
    },
  };
}
