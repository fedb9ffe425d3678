/**
 * Reads an application/x-www-form-urlencoded body strictly, for the endpoints Tessera serves
 * itself: bounded size, UTF-8 only, and every parameter at most once (RFC 6749 §3.2) unless the
 * endpoint answers a repeat otherwise (`repeated`).
 */
import type { Context } from 'koa';

import { OAuthError } from './oauth-error.js';

export const FORM_LIMIT_BYTES = 16 * 1024;

export type Form = ReadonlyMap<string, string>;

export async function readForm(ctx: Context, repeated: (name: string) => OAuthError = (name) => OAuthError.duplicateParameter(name)): Promise<Form> {
  if (ctx.is('application/x-www-form-urlencoded') !== 'application/x-www-form-urlencoded') {
    throw OAuthError.invalidRequest('the body must be application/x-www-form-urlencoded', 'wrong_content_type');
  }
  const charset = ctx.request.charset;
  if (charset !== '' && charset.toLowerCase() !== 'utf-8') {
    throw OAuthError.invalidRequest('the body must be UTF-8', 'wrong_charset');
  }
  const declared = ctx.request.length;
  if (declared !== undefined && declared > FORM_LIMIT_BYTES) throw tooLarge();

  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of ctx.req) {
    size += (chunk as Buffer).length;
    if (size > FORM_LIMIT_BYTES) throw tooLarge();
    chunks.push(chunk as Buffer);
  }

  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(Buffer.concat(chunks, size));
  } catch {
    throw OAuthError.invalidRequest('the body is not valid UTF-8', 'invalid_utf8');
  }

  const form = new Map<string, string>();
  for (const [name, value] of new URLSearchParams(text)) {
    if (form.has(name)) throw repeated(name);
    form.set(name, value);
  }
  return form;
}

const tooLarge = () => OAuthError.invalidRequest(`the body must not exceed ${FORM_LIMIT_BYTES} bytes`, 'body_too_large', 413);
