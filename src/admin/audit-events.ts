/** /admin/audit-events: the audit log, newest first, filtered and cursor-paged. */
import type { Context } from 'koa';

import { findAuditEvent, listAuditEvents } from '../audit/audit-event.repository.js';
import type { AuditEventRow } from '../audit/audit-event.table.js';
import type { Db } from '../db/database.js';
import { paramsOf } from '../http/routes.js';
import { AdminError } from './admin-error.js';
import { decodeCursor, page, parseLimit, queryValue } from './paging.js';

export function presentAuditEvent(row: AuditEventRow) {
  return {
    id: row.id,
    occurred_at: new Date(Number(row.occurred_at)).toISOString(),
    type: row.type,
    outcome: row.outcome,
    client_id: row.client_id,
    remote_addr: row.remote_addr,
    user_agent: row.user_agent,
    request_id: row.request_id,
    requested_scope: row.requested_scope,
    granted_scope: row.granted_scope,
    audience: row.audience,
    jti: row.jti,
    token_expires_at: row.token_expires_at === null ? null : new Date(Number(row.token_expires_at) * 1000).toISOString(),
    error: row.error,
    reason: row.reason,
    details: row.details === null ? null : (JSON.parse(row.details) as Record<string, unknown>),
  };
}

// RFC 3339 date-time with a zone, as the query filters accept it.
const RFC3339 = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/i;

function time(field: string, raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  const ms = RFC3339.test(raw) ? Date.parse(raw) : NaN;
  if (Number.isNaN(ms)) throw AdminError.invalid(field, `${field} must be an RFC 3339 date-time, e.g. 2026-11-23T20:00:00Z`);
  return ms;
}

export function auditHandlers(db: Db) {
  return {
    list: async (ctx: Context) => {
      const limit = parseLimit(queryValue(ctx.query, 'limit'));
      const outcome = queryValue(ctx.query, 'outcome');
      if (outcome !== undefined && outcome !== 'success' && outcome !== 'failure') throw AdminError.invalid('outcome', 'outcome must be success or failure');
      const rows = await listAuditEvents(db, {
        limit: limit + 1,
        before: decodeCursor(queryValue(ctx.query, 'cursor')),
        clientId: queryValue(ctx.query, 'client_id'),
        type: queryValue(ctx.query, 'type'),
        outcome,
        since: time('since', queryValue(ctx.query, 'since')),
        until: time('until', queryValue(ctx.query, 'until')),
      });
      ctx.body = page(rows, limit, (r) => r.id, presentAuditEvent);
    },

    get: async (ctx: Context) => {
      const row = await findAuditEvent(db, paramsOf(ctx).id!);
      if (!row) throw AdminError.notFound('audit event');
      ctx.body = presentAuditEvent(row);
    },
  };
}
