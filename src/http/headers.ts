import type { Context, Middleware } from 'koa';

/**
 * Node keeps the first of repeated Authorization headers and drops the rest, while a proxy in front
 * may have judged the last: such a request is refused as invalid_request (RFC 6749 §5.2 "more than
 * one mechanism", RFC 6750 §3.1 "multiple credentials").
 */
export function repeatedAuthorization(ctx: Context): boolean {
  const raw = ctx.req.rawHeaders;
  let seen = 0;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.length === 13 && raw[i]!.toLowerCase() === 'authorization' && ++seen > 1) return true;
  }
  return false;
}

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
 * CORS for the token endpoint: off unless the operator lists origins (TOKEN_CORS_ORIGINS), since
 * workloads are not browsers. A listed origin gets exactly these: the POST itself, with
 * Authorization and Content-Type.
 */
export function tokenCors(origins: readonly string[]): { readonly preflight: Middleware; readonly response: Middleware } {
  const allowed = new Set(origins);
  const allow = (ctx: Context): boolean => {
    ctx.vary('Origin');
    const origin = ctx.get('Origin');
    if (!allowed.has(origin)) return false;
    ctx.set('Access-Control-Allow-Origin', origin);
    return true;
  };
  return {
    // OPTIONS: 204 either way; only a listed origin is told it may POST.
    preflight: function tokenCorsPreflight(ctx) {
      ctx.status = 204;
      if (!allow(ctx)) return;
      ctx.set('Access-Control-Allow-Methods', 'POST');
      ctx.set('Access-Control-Allow-Headers', 'Authorization, Content-Type');
      ctx.set('Access-Control-Max-Age', '600');
    },
    response: async function tokenCors(ctx, next) {
      try {
        await next();
      } finally {
        allow(ctx);
      }
    },
  };
}
