/** What the steps of one token request learn about it, kept on `ctx.state.token`. */
import type { Client } from '../clients/client.js';
import type { Throttled } from '../limits/index.js';
import type { RefusalKey } from '../limits/refusals.js';
import type { Grant } from './policy.js';

export interface TokenRequestState {
  /** Set once the secret is verified. */
  client?: Client;
  grant?: Grant;
  /** The key of the engine handling this request: the one it can sign with. */
  signingKid?: string;
  /** Why the request failed, for the audit log only: a Tessera reason code or the engine's own words. */
  failure?: {
    reason: string;
    description?: string | undefined;
    throttled?: Throttled | undefined;
    /** Set when a limit or the overloaded argon2 queue refused the request: its audit row may be aggregated. */
    refusal?: RefusalKey | undefined;
  };
}

export function tokenState(ctx: { state: unknown }): TokenRequestState {
  // koa types ctx.state loosely; this is the one place that names our slot in it.
  const state = ctx.state as { token?: TokenRequestState };
  return (state.token ??= {});
}

