/**
 * Reads an application/x-www-form-urlencoded body strictly, for the OAuth endpoints: bounded size,
 * at most MAX_PARAMETERS parameters, and the endpoint's own parameters only (RFC 6749 §3.2): each
 * at most once, unless the endpoint answers a repeat otherwise (`repeated`); an empty one is
 * omitted; any other parameter is ignored.
 */
import type { Context } from 'koa';

import { OAuthError } from './oauth-error.js';

export const FORM_LIMIT_BYTES = 16 * 1024;
/** Every endpoint needs a handful; a form naming more than this is refused. */
const MAX_PARAMETERS = 100;

export type Form = ReadonlyMap<string, string>;

const UTF8_LABELS = new Set(['', 'utf-8', 'utf8']);
// A form-encoded body is ASCII, which these labels read the same as UTF-8 (some Java clients label
// forms ISO-8859-1); under them, any other byte is refused.
const ASCII_LABELS = new Set(['us-ascii', 'iso-8859-1', 'latin1']);

export async function readForm(
  ctx: Context,
  parameters: ReadonlySet<string>,
  repeated: (name: string) => OAuthError = (name) => OAuthError.duplicateParameter(name),
): Promise<Form> {
  if (ctx.is('application/x-www-form-urlencoded') !== 'application/x-www-form-urlencoded') {
    throw OAuthError.invalidRequest('the body must be application/x-www-form-urlencoded', 'wrong_content_type');
  }
  const charset = ctx.request.charset.toLowerCase();
  if (!UTF8_LABELS.has(charset) && !ASCII_LABELS.has(charset)) throw wrongCharset();
  const declared = ctx.request.length;
  if (declared !== undefined && declared > FORM_LIMIT_BYTES) throw tooLarge();

  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of ctx.req) {
      size += (chunk as Buffer).length;
      if (size > FORM_LIMIT_BYTES) throw tooLarge();
      chunks.push(chunk as Buffer);
    }
  } catch (err) {
    if (err instanceof OAuthError) throw err;
    // The caller went away or the connection broke mid-body: its failure, not the server's.
    throw OAuthError.invalidRequest('the body was not received in full', 'body_incomplete');
  }

  const bytes = Buffer.concat(chunks, size);
  if (ASCII_LABELS.has(charset) && bytes.some((b) => b > 0x7f)) throw wrongCharset();
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw invalidUtf8();
  }

  const form = new Map<string, string>();
  let count = 0;
  for (const [name, value] of new URLSearchParams(text)) {
    if (++count > MAX_PARAMETERS) throw OAuthError.invalidRequest(`the request must not have more than ${MAX_PARAMETERS} parameters`, 'too_many_parameters');
    if (value === '' || !parameters.has(name)) continue;
    // A percent-escape that is not UTF-8 decodes to U+FFFD: refused, not silently misread.
    if (value.includes('\uFFFD')) throw invalidUtf8();
    if (form.has(name)) throw repeated(name);
    form.set(name, value);
  }
  return form;
}

const tooLarge = () => OAuthError.invalidRequest(`the body must not exceed ${FORM_LIMIT_BYTES} bytes`, 'body_too_large', 413);
const invalidUtf8 = () => OAuthError.invalidRequest('the body is not valid UTF-8', 'invalid_utf8');
const wrongCharset = () => OAuthError.invalidRequest('the body must be UTF-8', 'wrong_charset');
