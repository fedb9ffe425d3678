/**
 * /admin: JSON REST for operators and automation. Start here: every route, and what guards it.
 * A request goes: no-store headers → admin errors as JSON → bearer token (authorize.ts) → handler.
 */
import type { Middleware } from 'koa';

import type { AuditLog } from '../audit/audit-log.js';
import { findClient } from '../clients/client.repository.js';
import type { ClientServiceDeps } from '../clients/client.service.js';
import type { Clock } from '../clock.js';
import type { Db } from '../db/database.js';
import { noStore } from '../http/headers.js';
import type { RouteTable } from '../http/routes.js';
import type { TokenInspector } from '../introspection/inspect-token.js';
import type { KeyManager } from '../keys/key-manager.js';
import type { Refusals } from '../limits/refusals.js';
import { adminErrors } from './admin-error.js';
import { auditHandlers } from './audit-events.js';
import { authorizeAdmin } from './authorize.js';
import { clientHandlers } from './clients.js';
import { openApiDocument } from './openapi.js';
import { keyHandlers, tokenHandlers } from './tokens-and-keys.js';

export const OPENAPI_PATH = '/admin/openapi.json';

export interface AdminDeps {
  readonly db: Db;
  readonly service: Omit<ClientServiceDeps, 'actor'>;
  readonly inspect: TokenInspector;
  readonly auditLog: AuditLog;
  /** Where denied requests are counted, so a flood of them cannot flood the audit log. */
  readonly refusals: Refusals;
  readonly keys: KeyManager;
  readonly clock: Clock;
  readonly issuer: string;
  readonly bodyLimit: number;
}

export function adminRoutes(deps: AdminDeps): RouteTable {
  const authorize = authorizeAdmin({ inspect: deps.inspect, issuer: deps.issuer, findClient: (clientId) => findClient(deps.db, clientId), auditLog: deps.auditLog, refusals: deps.refusals });
  const guarded = (handler: Middleware): Middleware[] => [noStore, adminErrors, authorize, handler];
  const clients = clientHandlers({ service: deps.service, bodyLimit: deps.bodyLimit });
  const audit = auditHandlers(deps.db);
  const tokens = tokenHandlers(deps.db, deps.auditLog, deps.clock);
  const keys = keyHandlers(deps.keys);
  const openApi = JSON.stringify(openApiDocument);

  return {
    // The description of the API is public; everything it describes is not.
    [OPENAPI_PATH]: {
      GET: [
        (ctx) => {
          ctx.type = 'application/json';
          ctx.body = openApi;
        },
      ],
    },
    '/admin/clients': { GET: guarded(clients.list), POST: guarded(clients.create) },
    '/admin/clients/:client_id': { GET: guarded(clients.get), PATCH: guarded(clients.update), DELETE: guarded(clients.remove) },
    '/admin/clients/:client_id/secrets': { GET: guarded(clients.listSecrets), POST: guarded(clients.rotateSecret) },
    '/admin/clients/:client_id/secrets/:secret_id': { DELETE: guarded(clients.revokeSecret) },
    '/admin/clients/:client_id/revoke-tokens': { POST: guarded(clients.revokeTokens) },
    '/admin/tokens/:jti': { DELETE: guarded(tokens.revoke) },
    '/admin/audit-events': { GET: guarded(audit.list) },
    '/admin/audit-events/:id': { GET: guarded(audit.get) },
    '/admin/keys': { GET: guarded(keys.list) },
    '/admin/keys/rotate': { POST: guarded(keys.rotate) },
    '/admin/keys/:kid/revoke': { POST: guarded(keys.revoke) },
  };
}
