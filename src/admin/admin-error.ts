/**
 * Admin API errors: `{"error", "error_description", "field"?}` with the right HTTP status, and the
 * middleware that writes them. Unknown errors are left to the outer handler (a generic 500).
 */
import type { Middleware } from 'koa';

import { InvalidSettingError } from '../clients/client-settings.js';
import { DuplicateClientError } from '../clients/client.repository.js';
import { UnknownClientError } from '../clients/client.service.js';
import { Overloaded } from '../clients/work-pool.js';
import { RETRY_AFTER } from '../http/oauth-error.js';

export class AdminError extends Error {
  constructor(
    readonly status: number,
    readonly error: string,
    readonly description: string,
    readonly field?: string,
  ) {
    super(description);
    this.name = 'AdminError';
  }

  static invalid(field: string, description: string): AdminError {
    return new AdminError(400, 'invalid_request', description, field);
  }

  static notFound(what: string): AdminError {
    return new AdminError(404, 'not_found', `no such ${what}`);
  }
}

function toAdminError(err: unknown): AdminError | undefined {
  if (err instanceof AdminError) return err;
  if (err instanceof InvalidSettingError) return AdminError.invalid(err.field, err.message);
  if (err instanceof UnknownClientError) return AdminError.notFound('client');
  if (err instanceof Overloaded) return new AdminError(503, 'temporarily_unavailable', 'too many requests are waiting; retry shortly');
  if (err instanceof DuplicateClientError) return new AdminError(409, 'conflict', err.message, 'client_id');
  return undefined;
}

export const adminErrors: Middleware = async function adminErrors(ctx, next) {
  try {
    await next();
  } catch (err) {
    const known = toAdminError(err);
    if (!known) throw err;
    ctx.status = known.status;
    if (known.status === 503) ctx.set('Retry-After', RETRY_AFTER);
    ctx.body = { error: known.error, error_description: known.description, ...(known.field === undefined ? {} : { field: known.field }) };
  }
};
