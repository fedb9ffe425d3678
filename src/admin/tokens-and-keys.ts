/** /admin/tokens/{jti} (revoke one token) and /admin/keys (list, rotate, revoke; never key material). */
import type { Context } from 'koa';

import { findIssuance } from '../audit/audit-event.repository.js';
import { auditEvent, type AuditLog } from '../audit/audit-log.js';
import { epochSeconds, type Clock } from '../clock.js';
import type { Db } from '../db/database.js';
import { requestSource } from '../http/request-context.js';
import { paramsOf } from '../http/routes.js';
import { insertRevokedToken } from '../introspection/revocation.repository.js';
import type { KeyManager } from '../keys/key-manager.js';
import { KeystoreError, type SigningKey } from '../keys/keystore.js';
import { AdminError } from './admin-error.js';
import { adminActor } from './authorize.js';
import { readOptionalJson } from './read-json.js';

const iso = (seconds: number | null) => (seconds === null ? null : new Date(seconds * 1000).toISOString());

export function tokenHandlers(db: Db, auditLog: AuditLog, clock: Clock) {
  return {
    /** Tokens are not stored; their issuance audit row names the client and the expiry. */
    revoke: async (ctx: Context) => {
      const jti = paramsOf(ctx).jti!;
      const issued = await findIssuance(db, jti);
      if (!issued?.client_id || issued.token_expires_at === null) throw AdminError.notFound('token');
      const revoked = await insertRevokedToken(db, { jti, clientId: issued.client_id, expiresAt: Number(issued.token_expires_at) }, epochSeconds(clock));
      await auditLog.record(
        auditEvent({
          type: 'token.revoked',
          outcome: 'success',
          client_id: issued.client_id,
          ...requestSource(ctx),
          audience: issued.audience,
          jti,
          token_expires_at: Number(issued.token_expires_at),
          // As at /oauth/revoke: false when the token was already on the list.
          details: { actor: adminActor(ctx), revoked },
        }),
      );
      ctx.status = 204;
    },
  };
}

export function presentKey(key: SigningKey) {
  return {
    kid: key.kid,
    state: key.state,
    created_at: iso(key.createdAt),
    activate_after: iso(key.activateAfter),
    activated_at: iso(key.activatedAt),
    retired_at: iso(key.retiredAt),
    revoked_at: iso(key.revokedAt),
  };
}

export function keyHandlers(keys: KeyManager) {
  return {
    list: (ctx: Context) => {
      ctx.body = { items: keys.current.list().map(presentKey) };
    },

    /** `{"now": true}` promotes at once, for operators who accept that caches may lack the key. */
    rotate: async (ctx: Context) => {
      const body = (await readOptionalJson(ctx, 1024)) ?? {};
      if (typeof body !== 'object' || body === null || Array.isArray(body) || Object.keys(body).some((k) => k !== 'now')) {
        throw AdminError.invalid('body', 'the body is {"now": true|false} or empty');
      }
      const now = (body as { now?: unknown }).now ?? false;
      if (typeof now !== 'boolean') throw AdminError.invalid('now', 'now must be true or false');
      const result = await keys.rotate({ now, actor: adminActor(ctx) });
      ctx.status = result.pending && !now ? 200 : 201;
      ctx.body = { ...presentKey(result.key), pending_rotation: result.pending };
    },

    revoke: async (ctx: Context) => {
      try {
        ctx.body = presentKey(await keys.revoke(paramsOf(ctx).kid!, adminActor(ctx)));
      } catch (err) {
        if (err instanceof KeystoreError && err.code === 'ERR_UNKNOWN_KEY') throw AdminError.notFound('key');
        throw err;
      }
    },
  };
}
