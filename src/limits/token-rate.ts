/**
 * Per-client token rate: a token bucket holding up to a minute's allowance, refilled continuously.
 * A workload that asks for a new token on every call instead of reusing one until it expires is
 * refused (429) once it has spent a minute's worth, while normal bursts (a fleet restarting)
 * pass. Buckets are kept in a bounded map: an evicted client simply starts again with a full one.
 */
import type { Clock } from '../clock.js';

interface Bucket {
  tokens: number;
  updatedMs: number;
}

export class TokenRate {
  readonly #buckets = new Map<string, Bucket>();

  constructor(
    private readonly clock: Clock,
    private readonly maxClients: number,
  ) {}

  /**
   * Takes one token from the client's bucket of `perMinute` (0: unlimited). Resolves to 0 when
   * allowed, else the whole seconds until the next token is available.
   */
  take(clientId: string, perMinute: number): number {
    if (perMinute <= 0) return 0;
    const now = this.clock.now();
    const bucket = this.#buckets.get(clientId) ?? { tokens: perMinute, updatedMs: now };
    // A clock stepped back refills nothing and takes nothing away; refilling goes on from the new time.
    bucket.tokens = Math.min(perMinute, bucket.tokens + (Math.max(0, now - bucket.updatedMs) / 60_000) * perMinute);
    bucket.updatedMs = now;
    this.#buckets.delete(clientId);
    this.#buckets.set(clientId, bucket);
    while (this.#buckets.size > this.maxClients) this.#buckets.delete(this.#buckets.keys().next().value as string);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil(((1 - bucket.tokens) * 60) / perMinute));
  }
}
