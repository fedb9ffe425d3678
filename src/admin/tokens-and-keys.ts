/** /admin/tokens/{jti} (revoke one token) and /admin/keys (the signing keys, public facts only). */
import type { Context } from 'koa';

import { findIssuance } from '../audit/audit-event.repository.js';
import type { AuditLog } from '../audit/audit-log.js';
import { epochSeconds, type Clock } from '../clock.js';
import type { Db } from '../db/database.js';
import { paramsOf } from '../http/routes.js';
import { insertRevokedToken } from '../introspection/revocation.repository.js';
import type { Keystore } from '../keys/keystore.js';
import { AdminError } from './admin-error.js';
import { adminActor } from './authorize.js';

const iso = (seconds: number | null) => (seconds === null ? null : new Date(seconds * 1000).toISOString());

export function tokenHandlers(db: Db, auditLog: AuditLog, clock: Clock) {
  return {
    /** Tokens are not stored; their issuance audit row names the client and the expiry. */
    revoke: async (ctx: Context) => {
      const jti = paramsOf(ctx).jti!;
      const issued = await findIssuance(db, jti);
      if (!issued?.client_id || issued.token_expires_at === null) throw AdminError.notFound('token');
      await insertRevokedToken(db, { jti, clientId: issued.client_id, expiresAt: Number(issued.token_expires_at) }, epochSeconds(clock));
      await auditLog.record({
        type: 'token.revoked',
        outcome: 'success',
        client_id: issued.client_id,
        remote_addr: null,
        user_agent: null,
        request_id: null,
        requested_scope: null,
        granted_scope: null,
        audience: issued.audience,
        jti,
        token_expires_at: Number(issued.token_expires_at),
        error: null,
        reason: null,
        details: JSON.stringify({ actor: adminActor(ctx), revoked: true }),
      });
      ctx.status = 204;
    },
  };
}

export function keyHandlers(keystore: Keystore) {
  return {
    list: (ctx: Context) => {
      ctx.body = {
        items: keystore.list().map((k) => ({ kid: k.kid, state: k.state, created_at: iso(k.createdAt), activated_at: iso(k.activatedAt), retired_at: null })),
      };
    },
  };
}
