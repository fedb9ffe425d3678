/**
 * Limits on abuse, applied wherever a client authenticates (token, introspection, revocation):
 *   backoff.ts     failed authentications, per client_id and per source address
 *   token-rate.ts  tokens per minute, per client, at the token endpoint
 *   refusals.ts    refused requests in the audit log, aggregated
 * A refused request is answered 429 with Retry-After.
 *
 * Trade-off (README "Limits"): anyone can make a client_id fail, so its back-off is short
 * (AUTH_BACKOFF_MAX_CLIENT, 60 s by default) and a caller presenting a secret verified recently
 * is never held by it; the back-off per address, which an attacker cannot spend for someone else,
 * is long. Limits are per process.
 */
import type { AuditLog } from '../audit/audit-log.js';
import type { Clock } from '../clock.js';
import type { Config } from '../config.js';
import { Backoff } from './backoff.js';
import { Refusals, type RefusalKey } from './refusals.js';
import { TokenRate } from './token-rate.js';

export class Throttled extends Error {
  constructor(
    /** Whole seconds the caller should wait. */
    readonly retryAfter: number,
    readonly key: RefusalKey,
  ) {
    super(`refused by a limit (${key.reason}); retry after ${retryAfter} s`);
    this.name = 'Throttled';
  }
}

const MAX_KEYS = 100_000;

export class Limits {
  readonly byClient: Backoff;
  readonly byAddress: Backoff;
  readonly tokenRate: TokenRate;
  readonly refusals: Refusals;

  constructor(
    private readonly config: Config['limits'],
    clock: Clock,
    auditLog: AuditLog,
  ) {
    const window = { windowSeconds: config.authFailureWindow, maxKeys: MAX_KEYS };
    this.byClient = new Backoff({ ...window, threshold: config.authFailuresPerClient, maxSeconds: config.authBackoffMaxClient }, clock);
    this.byAddress = new Backoff({ ...window, threshold: config.authFailuresPerAddress, maxSeconds: config.authBackoffMaxAddress }, clock);
    this.tokenRate = new TokenRate(clock, MAX_KEYS);
    this.refusals = new Refusals(auditLog, clock);
  }

  /** Refuses a client whose token rate is spent; `perMinute` null means the server default. */
  takeToken(clientId: string, perMinute: number | null): void {
    const wait = this.tokenRate.take(clientId, perMinute ?? this.config.tokenRateLimit);
    if (wait > 0) throw new Throttled(wait, { kind: 'client_id', value: clientId, reason: 'token_rate_limited' });
  }
}
