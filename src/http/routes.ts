/**
 * The allow-list of everything Tessera serves: a table of paths (exact, or with `:name` segments)
 * and methods. Anything else, every oidc-provider route included (none is mounted), is a JSON 404
 * (or 405 for a known path with the wrong method).
 */
import type { Context, Middleware } from 'koa';
import compose from 'koa-compose';

export type Method = 'GET' | 'POST' | 'PATCH' | 'DELETE' | 'OPTIONS';
export type RouteTable = Readonly<Record<string, Readonly<Partial<Record<Method, readonly Middleware[]>>>>>;

interface CompiledRoute {
  readonly pattern: RegExp;
  readonly names: readonly string[];
  readonly methods: ReadonlyMap<string, Middleware>;
}

/** Path parameters of the matched route, URL-decoded. */
export function paramsOf(ctx: Context): Readonly<Record<string, string>> {
  return (ctx.state as { params?: Record<string, string> }).params ?? {};
}

function compile(path: string, methods: RouteTable[string]): CompiledRoute {
  const names: string[] = [];
  const source = path
    .split('/')
    .map((segment) => {
      if (!segment.startsWith(':')) return segment.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      names.push(segment.slice(1));
      return '([^/]+)';
    })
    .join('/');
  return {
    pattern: new RegExp(`^${source}$`),
    names,
    methods: new Map(Object.entries(methods).map(([method, stack]) => [method, compose([...stack])])),
  };
}

export function routes(table: RouteTable): Middleware {
  const compiled = Object.entries(table).map(([path, methods]) => compile(path, methods));

  return async function routes(ctx, next) {
    const allowed = new Set<string>();
    for (const route of compiled) {
      const match = route.pattern.exec(ctx.path);
      if (!match) continue;
      const handler = route.methods.get(ctx.method === 'HEAD' ? 'GET' : ctx.method);
      if (!handler) {
        route.methods.forEach((_, method) => allowed.add(method));
        continue;
      }
      let params: Record<string, string>;
      try {
        params = Object.fromEntries(route.names.map((name, i) => [name, decodeURIComponent(match[i + 1]!)]));
      } catch {
        break; // a malformed escape names nothing we serve
      }
      // Nor does a NUL: no id holds one, and PostgreSQL refuses it in a query parameter.
      if (Object.values(params).some((value) => value.includes('\0'))) break;
      (ctx.state as { params?: Record<string, string> }).params = params;
      await handler(ctx, next);
      return;
    }
    if (allowed.size > 0) {
      ctx.status = 405;
      ctx.set('Allow', [...allowed].join(', '));
      ctx.body = { error: 'invalid_request', error_description: `${ctx.method} is not allowed here` };
      return;
    }
    ctx.status = 404;
    ctx.body = { error: 'not_found', error_description: 'no such endpoint' };
  };
}
