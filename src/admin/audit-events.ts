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

// RFC 3339 §5.6 date-time: full-date "T" full-time, the zone "Z" or ±hh:mm; "T" and "Z" may be
// lower case (§5.6 NOTE). The ranges of the fields are checked by parseDateTime, not here.
const DATE_TIME = /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d+))?(?:Z|([+-])(\d\d):(\d\d))$/i;

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

function daysInMonth(year: number, month: number): number {
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  return month === 2 && leap ? 29 : DAYS_IN_MONTH[month - 1]!;
}

/**
 * Epoch milliseconds of an RFC 3339 date-time, or undefined if `raw` is not one. Strict where
 * Date.parse is lenient: an impossible date or time (February 30, month 13, hour 24, minute 60, an
 * offset of +24:00) is refused instead of rolling over into the next day or month. A leap second
 * (second 60) is accepted only at 23:59 UTC (§5.7), and, POSIX time having none, counts as the
 * start of the next second. Digits of a fraction beyond milliseconds are dropped.
 */
export function parseDateTime(raw: string): number | undefined {
  const m = DATE_TIME.exec(raw);
  if (!m) return undefined;
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  const [offsetHours, offsetMinutes] = [Number(m[9] ?? 0), Number(m[10] ?? 0)];
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) return undefined;
  if (hour > 23 || minute > 59 || second > 60 || offsetHours > 23 || offsetMinutes > 59) return undefined;
  const offset = (m[8] === '-' ? -1 : 1) * (offsetHours * 60 + offsetMinutes);
  if (second === 60 && (((hour * 60 + minute - offset) % 1440) + 1440) % 1440 !== 23 * 60 + 59) return undefined;
  const at = new Date(0);
  // setUTCFullYear, unlike Date.UTC, takes years 0-99 as they are (not as 1900-1999).
  at.setUTCFullYear(year, month - 1, day);
  at.setUTCHours(hour, minute, second, Number((m[7] ?? '').slice(0, 3).padEnd(3, '0')));
  return at.getTime() - offset * 60_000;
}

function time(field: string, raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  const ms = parseDateTime(raw);
  if (ms === undefined) throw AdminError.invalid(field, `${field} must be an RFC 3339 date-time, e.g. 2026-11-23T20:00:00Z`);
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
