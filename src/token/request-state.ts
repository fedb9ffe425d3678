/** What the steps of one token request learn about it, kept on `ctx.state.token`. */
import type { Client } from '../clients/client.js';
import type { Grant } from './policy.js';

export interface TokenRequestState {
  /** Set once the secret is verified. */
  client?: Client;
  grant?: Grant;
  /** Internal reason for a failure, for the audit log only. */
  failure?: string;
}

export function tokenState(ctx: { state: unknown }): TokenRequestState {
  // koa types ctx.state loosely; this is the one place that names our slot in it.
  const state = ctx.state as { token?: TokenRequestState };
  return (state.token ??= {});
}

