/**
 * Outermost middleware: a request id, baseline security headers, one access-log line per request,
 * and a last-resort error handler that never lets an internal message or stack reach the caller.
 */
import { randomUUID } from 'node:crypto';

import type { Context, Middleware } from 'koa';

import { scrub } from '../audit/audit-log.js';
import type { Logger } from '../log.js';
import { SERVER_ERROR } from './oauth-error.js';

const REQUEST_ID = /^[A-Za-z0-9._-]{1,64}$/;

export function requestIdOf(ctx: Context): string | null {
  const id = (ctx.state as { requestId?: string }).requestId;
  return id ?? null;
}

/** Where a request came from, as every audit row written for it records it. */
export interface RequestSource {
  readonly remote_addr: string | null;
  readonly user_agent: string | null;
  readonly request_id: string | null;
}

export function requestSource(ctx: Context): RequestSource {
  return { remote_addr: scrub(ctx.ip, 64), user_agent: scrub(ctx.get('user-agent')), request_id: requestIdOf(ctx) };
}

/**
 * Names the client a request authenticated as, for its access-log line. Only a proven client_id
 * is logged: a presented one may be anything, a secret pasted into the wrong field included.
 */
export function authenticatedAs(ctx: Context, clientId: string): void {
  (ctx.state as { clientId?: string }).clientId = clientId;
}

/** What a caller going away looks like: nothing to fix on this side. */
const CONNECTION_ERRORS = new Set(['ECONNRESET', 'EPIPE', 'ECONNABORTED', 'ERR_STREAM_PREMATURE_CLOSE']);

/**
 * What koa reports outside a request's middleware: a caller resetting its connection, mostly, at
 * debug level. Without a listener koa prints the stack to stderr, outside the JSON log, as often as
 * anyone likes. Anything else (an answer that could not be sent) is an error, with its stack.
 */
export function logConnectionErrors(log: Logger): (err: Error & { code?: string }, ctx?: Context) => void {
  return (err, ctx) => {
    const request_id = ctx ? requestIdOf(ctx) : null;
    if (err.code !== undefined && CONNECTION_ERRORS.has(err.code)) log.debug({ err: { code: err.code, message: err.message }, request_id }, 'connection error');
    else log.error({ err, request_id }, 'response failed');
  };
}

/** `quiet`: paths whose access lines are logged at debug level only (health probes). */
export function requestContext(log: Logger, quiet: readonly string[] = []): Middleware {
  return async function requestContext(ctx, next) {
    const started = performance.now();
    // A well-formed id from a proxy is kept so one request can be followed across hops.
    const incoming = ctx.get('x-request-id');
    const requestId = REQUEST_ID.test(incoming) ? incoming : randomUUID();
    (ctx.state as { requestId?: string }).requestId = requestId;
    ctx.set('X-Request-Id', requestId);
    ctx.set('X-Content-Type-Options', 'nosniff');

    try {
      await next();
    } catch (err) {
      log.error({ err, request_id: requestId }, 'unhandled error');
      ctx.status = 500;
      ctx.set('Cache-Control', 'no-store');
      ctx.body = { ...SERVER_ERROR };
    }

    const level = quiet.includes(ctx.path) ? 'debug' : 'info';
    log[level](
      {
        request_id: requestId,
        method: ctx.method,
        route: scrub(ctx.path),
        status: ctx.status,
        latency_ms: Math.round((performance.now() - started) * 10) / 10,
        client_id: (ctx.state as { clientId?: string }).clientId ?? null,
      },
      'request',
    );
  };
}
