/**
 * Bounds the argon2 work in flight: at most `concurrency` at once and `queueLimit` waiting in each
 * lane. Past that, work is refused at once (Overloaded) instead of letting latency grow without
 * bound, so a flood of bad credentials costs the attacker, not the clients whose credentials are
 * cached.
 *
 * Two lanes, because cached credentials expire (CREDENTIAL_CACHE_TTL) and a flood can outlast them:
 * `held` is work on a secret Tessera holds (a verify against its stored hash, a new hash), `other`
 * the decoy verifies for client_ids and secret ids that do not exist. A flood of the latter fills
 * its own lane only, and a freed slot goes to held work first. Which lane a request takes depends
 * on its secret's id, which only a holder of the secret knows: it tells a guesser nothing.
 */
export class Overloaded extends Error {
  readonly code = 'ERR_OVERLOADED';
  constructor() {
    super('argon2 work queue is full');
    this.name = 'Overloaded';
  }
}

export type Lane = 'held' | 'other';

export class WorkPool {
  #active = 0;
  readonly #waiting: Record<Lane, (() => void)[]> = { held: [], other: [] };

  constructor(
    private readonly concurrency: number,
    private readonly queueLimit: number,
  ) {}

  async run<T>(lane: Lane, work: () => Promise<T>): Promise<T> {
    if (this.#active >= this.concurrency) {
      const waiting = this.#waiting[lane];
      if (waiting.length >= this.queueLimit) throw new Overloaded();
      await new Promise<void>((resolve) => waiting.push(resolve));
    }
    this.#active += 1;
    try {
      return await work();
    } finally {
      this.#active -= 1;
      (this.#waiting.held.shift() ?? this.#waiting.other.shift())?.();
    }
  }

  /** Work running now. */
  get active(): number {
    return this.#active;
  }

  /** Work waiting for a slot, in both lanes (the argon2 queue depth). */
  get queued(): number {
    return this.#waiting.held.length + this.#waiting.other.length;
  }
}
