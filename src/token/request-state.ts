/** What the steps of one token request learn about it, kept on `ctx.state.token`. */
import type { Client } from '../clients/client.js';
import type { Form } from '../http/read-form.js';
import type { RefusalKey } from '../limits/refusals.js';
import type { Grant } from './policy.js';

export interface TokenRequestState {
  /** Set once the body has been read. */
  form?: Form;
  /** The client_id as presented, before it is proven: for attributing a failed request. */
  presentedClientId?: string;
  /** Set once the secret is verified. */
  client?: Client;
  grant?: Grant;
  /** Set once the token is signed and about to be answered. */
  issued?: { jti: string; expiresAt: number };
  /** Why the request failed, for the audit log only: a Tessera reason code. */
  failure?: {
    reason: string;
    /** Set when a limit or the overloaded argon2 queue refused the request: its audit row may be aggregated. */
    refusal?: RefusalKey | undefined;
  };
}

export function tokenState(ctx: { state: unknown }): TokenRequestState {
  // koa types ctx.state loosely; this is the one place that names our slot in it.
  const state = ctx.state as { token?: TokenRequestState };
  return (state.token ??= {});
}
