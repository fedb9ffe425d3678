/** Reads an admin request body: JSON only (415 otherwise), bounded size, parse errors as 400. */
import type { Context } from 'koa';

import { AdminError } from './admin-error.js';

export async function readJson(ctx: Context, limit: number): Promise<unknown> {
  if (ctx.is('application/json') !== 'application/json') {
    throw new AdminError(415, 'unsupported_media_type', 'the body must be application/json');
  }
  const declared = ctx.request.length;
  if (declared !== undefined && declared > limit) throw new AdminError(413, 'invalid_request', `the body must not exceed ${limit} bytes`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of ctx.req) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new AdminError(413, 'invalid_request', `the body must not exceed ${limit} bytes`);
    chunks.push(chunk as Buffer);
  }
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(Buffer.concat(chunks, size))) as unknown;
  } catch {
    throw AdminError.invalid('body', 'the body is not valid JSON');
  }
}

/**
 * For endpoints whose body is optional: undefined when the request has none. A chunked body
 * (Transfer-Encoding, no Content-Length) is a body too, and is read and checked like any other.
 */
export function readOptionalJson(ctx: Context, limit: number): Promise<unknown> {
  const hasBody = (ctx.request.length ?? 0) > 0 || ctx.get('transfer-encoding') !== '';
  return hasBody ? readJson(ctx, limit) : Promise.resolve(undefined);
}
