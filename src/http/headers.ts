import type { Middleware } from 'koa';

/** RFC 6749 §5.1: responses carrying tokens or credentials must not be cached. */
export const noStore: Middleware = async function noStore(ctx, next) {
  try {
    await next();
  } finally {
    ctx.set('Cache-Control', 'no-store');
    ctx.set('Pragma', 'no-cache');
  }
};

/**
 * CORS is off: workloads are not browsers. oidc-provider adds CORS headers on its own routes;
 * removing them means a browser page can never read a token response.
 */
export const withoutCors: Middleware = async function withoutCors(ctx, next) {
  try {
    await next();
  } finally {
    for (const name of Object.keys(ctx.response.headers)) {
      if (name.toLowerCase().startsWith('access-control-')) ctx.remove(name);
    }
    ctx.remove('Vary');
  }
};
