/**
 * The allow-list of everything Tessera serves: an exact path and method table. Anything else,
 * including every oidc-provider route Tessera does not use, is a JSON 404 (or 405 for a known
 * path with the wrong method).
 */
import type { Middleware } from 'koa';
import compose from 'koa-compose';

export type RouteTable = Readonly<Record<string, Readonly<Partial<Record<'GET' | 'POST', readonly Middleware[]>>>>>;

export function routes(table: RouteTable): Middleware {
  const compiled = new Map(
    Object.entries(table).map(([path, methods]) => [
      path,
      new Map(Object.entries(methods).map(([method, stack]) => [method, compose([...stack])])),
    ]),
  );

  return async function routes(ctx, next) {
    const methods = compiled.get(ctx.path);
    if (!methods) {
      ctx.status = 404;
      ctx.body = { error: 'not_found', error_description: 'no such endpoint' };
      return;
    }
    const handler = methods.get(ctx.method === 'HEAD' ? 'GET' : ctx.method);
    if (!handler) {
      ctx.status = 405;
      ctx.set('Allow', [...methods.keys()].join(', '));
      ctx.body = { error: 'invalid_request', error_description: `${ctx.method} is not allowed here` };
      return;
    }
    await handler(ctx, next);
  };
}
