/**
 * Verified-credential cache: after a successful argon2id verify, remember that this presented
 * secret matches this stored hash, so the next request presenting it skips argon2.
 *
 * What is kept is an HMAC of the presented secret under a random per-process key, bound to the
 * secret's id and to the exact hash string it was verified against: never the plaintext, never on
 * disk. The client and secret rows are checked on every request (client-records.ts), so disabling a
 * client, expiring or revoking a secret, or deleting either still applies. Only successful
 * verifications are cached; a wrong secret always pays the full argon2 cost.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

import type { Clock } from '../clock.js';

interface Entry {
  readonly mac: Buffer;
  readonly hash: string;
  readonly expiresAt: number;
}

export interface VerifiedCredentialOptions {
  /** Milliseconds an entry stays valid; 0 disables the cache. */
  readonly ttlMs: number;
  /** Bound on entries; the least recently used goes first. */
  readonly maxEntries: number;
  readonly clock: Clock;
}

export class VerifiedCredentialCache {
  readonly #key = randomBytes(32);
  readonly #entries = new Map<string, Entry>();
  #hits = 0;
  #misses = 0;

  constructor(private readonly options: VerifiedCredentialOptions) {}

  #mac(presented: string): Buffer {
    return createHmac('sha256', this.#key).update(presented).digest();
  }

  /** True when this exact secret was verified against this exact hash within the TTL. */
  has(secretId: string, hash: string, presented: string): boolean {
    const found = this.#lookup(secretId, hash, presented);
    if (found) this.#hits += 1;
    else this.#misses += 1;
    return found;
  }

  #lookup(secretId: string, hash: string, presented: string): boolean {
    const entry = this.#entries.get(secretId);
    if (!entry) return false;
    if (entry.hash !== hash || entry.expiresAt <= this.options.clock.now()) {
      this.#entries.delete(secretId);
      return false;
    }
    if (!timingSafeEqual(entry.mac, this.#mac(presented))) return false;
    // Refresh recency: Map iteration order is insertion order.
    this.#entries.delete(secretId);
    this.#entries.set(secretId, entry);
    return true;
  }

  remember(secretId: string, hash: string, presented: string): void {
    if (this.options.ttlMs <= 0) return;
    this.#entries.delete(secretId);
    this.#entries.set(secretId, { mac: this.#mac(presented), hash, expiresAt: this.options.clock.now() + this.options.ttlMs });
    while (this.#entries.size > this.options.maxEntries) {
      const oldest = this.#entries.keys().next().value as string;
      this.#entries.delete(oldest);
    }
  }

  get size(): number {
    return this.#entries.size;
  }

  /** Lookups answered from the cache, and lookups that were not (metrics). */
  get hits(): number {
    return this.#hits;
  }

  get misses(): number {
    return this.#misses;
  }
}
