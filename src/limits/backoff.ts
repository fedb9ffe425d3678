/**
 * Exponential back-off by key (a client_id, a source address): after `threshold` failures within
 * `windowSeconds`, each further failure locks the key for twice as long as the one before, from one
 * second up to `maxSeconds`. The window is fixed, starting at the first failure after the last one
 * ended: failures trickling in more slowly than `threshold` per window never lock a key (a
 * forgotten job retrying a rotated secret must not, in the end, lock its whole address). Keys are kept in a bounded map (the least recently failed goes first), so a flood of
 * distinct keys costs bounded memory.
 */
import type { Clock } from '../clock.js';

export interface BackoffPolicy {
  readonly threshold: number;
  readonly windowSeconds: number;
  readonly maxSeconds: number;
  readonly maxKeys: number;
}

interface Entry {
  failures: number;
  windowStartMs: number;
  lockedUntilMs: number;
}

export class Backoff {
  readonly #entries = new Map<string, Entry>();

  constructor(
    private readonly policy: BackoffPolicy,
    private readonly clock: Clock,
  ) {}

  /** Whole seconds until the key may try again; 0 when it may now. */
  retryAfter(key: string): number {
    const entry = this.#entries.get(key);
    if (!entry) return 0;
    const now = this.clock.now();
    // A clock stepped back since the lock began must not stretch it: never beyond the cap from now.
    entry.lockedUntilMs = Math.min(entry.lockedUntilMs, now + this.policy.maxSeconds * 1000);
    const waitMs = entry.lockedUntilMs - now;
    return waitMs > 0 ? Math.ceil(waitMs / 1000) : 0;
  }

  failed(key: string): void {
    this.#update(key, (entry) => entry.failures + 1);
  }

  /**
   * The failures the shared count (shared.ts) says the key has within the window; the lock follows
   * from the higher of that and this instance's own count.
   */
  observe(key: string, failures: number): void {
    this.#update(key, (entry) => Math.max(entry.failures, failures));
  }

  #update(key: string, failures: (entry: Entry) => number): Entry {
    const now = this.clock.now();
    const { threshold, windowSeconds, maxSeconds, maxKeys } = this.policy;
    let entry = this.#entries.get(key);
    // A window that has ended is forgotten; a lock still running is not (AUTH_BACKOFF_MAX_* may be
    // longer than AUTH_FAILURE_WINDOW).
    if (!entry || now - entry.windowStartMs > windowSeconds * 1000) entry = { failures: 0, windowStartMs: now, lockedUntilMs: entry?.lockedUntilMs ?? 0 };
    // A window that began after now (the clock stepped back) begins now.
    entry.windowStartMs = Math.min(entry.windowStartMs, now);
    const before = entry.failures;
    entry.failures = failures(entry);
    if (entry.failures > before && entry.failures >= threshold) {
      const seconds = Math.min(maxSeconds, 2 ** Math.min(entry.failures - threshold, 30));
      entry.lockedUntilMs = Math.max(entry.lockedUntilMs, now + seconds * 1000);
    }
    this.#entries.delete(key);
    this.#entries.set(key, entry);
    while (this.#entries.size > maxKeys) this.#entries.delete(this.#entries.keys().next().value as string);
    return entry;
  }
}
