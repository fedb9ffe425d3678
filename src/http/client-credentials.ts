/**
 * Client credentials as a request presents them (RFC 6749 §2.3.1): client_secret_basic or
 * client_secret_post, never both. Shared by the token, introspection and revocation endpoints;
 * the credentials are then verified by token/authenticate-client.ts.
 */
import { OAuthError } from './oauth-error.js';
import type { Form } from './read-form.js';
import type { PresentedCredentials } from '../token/authenticate-client.js';

/** RFC 6749 Appendix B: id and secret in the Basic header are form-encoded before base64. */
function formDecode(value: string): string {
  return decodeURIComponent(value.replace(/\+/g, ' '));
}

/** The client_id a Basic header names, if it can be read; for attributing a failed request. */
export function basicClientId(authorization: string): string | undefined {
  try {
    return readClientCredentials(authorization, new Map()).clientId;
  } catch {
    return undefined;
  }
}

/** Reads the credentials from the Authorization header or the form; throws OAuthError. */
export function readClientCredentials(authorization: string, form: Form): Omit<PresentedCredentials, 'remoteAddr'> {
  const bodyId = form.get('client_id');
  const bodySecret = form.get('client_secret');

  if (authorization !== '') {
    if (bodySecret !== undefined) {
      throw OAuthError.invalidRequest('client authentication must use only one method', 'multiple_auth_methods');
    }
    const match = /^Basic ([A-Za-z0-9+/]+={0,2})$/i.exec(authorization);
    const decoded = match ? Buffer.from(match[1]!, 'base64').toString('utf8') : '';
    const colon = decoded.indexOf(':');
    if (colon < 0) throw OAuthError.invalidClient('credentials_malformed');
    let clientId: string;
    let secret: string;
    try {
      clientId = formDecode(decoded.slice(0, colon));
      secret = formDecode(decoded.slice(colon + 1));
    } catch {
      throw OAuthError.invalidClient('credentials_malformed');
    }
    if (clientId === '' || secret === '') throw OAuthError.invalidClient('credentials_malformed');
    if (bodyId !== undefined && bodyId !== clientId) {
      throw OAuthError.invalidRequest('client_id in the body does not match the Authorization header', 'client_id_mismatch');
    }
    return { clientId, secret, method: 'client_secret_basic' };
  }

  // Empty parameters never reach here: the form reader omits them (RFC 6749 §3.2).
  if (bodyId === undefined) throw OAuthError.invalidClient('credentials_missing');
  if (bodySecret === undefined) throw OAuthError.invalidClient('secret_missing');
  return { clientId: bodyId, secret: bodySecret, method: 'client_secret_post' };
}
