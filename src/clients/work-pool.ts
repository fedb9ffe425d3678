/**
 * Bounds the argon2 work in flight: at most `concurrency` at once and `queueLimit` waiting. Past
 * that, work is refused at once (Overloaded) instead of letting latency grow without bound, so a
 * flood of bad credentials costs the attacker, not the clients whose credentials are cached.
 */
export class Overloaded extends Error {
  readonly code = 'ERR_OVERLOADED';
  constructor() {
    super('argon2 work queue is full');
    this.name = 'Overloaded';
  }
}

export class WorkPool {
  #active = 0;
  readonly #waiting: (() => void)[] = [];

  constructor(
    private readonly concurrency: number,
    private readonly queueLimit: number,
  ) {}

  async run<T>(work: () => Promise<T>): Promise<T> {
    if (this.#active >= this.concurrency) {
      if (this.#waiting.length >= this.queueLimit) throw new Overloaded();
      await new Promise<void>((resolve) => this.#waiting.push(resolve));
    }
    this.#active += 1;
    try {
      return await work();
    } finally {
      this.#active -= 1;
      this.#waiting.shift()?.();
    }
  }

  /** Work running now. */
  get active(): number {
    return this.#active;
  }

  /** Work waiting for a slot (the argon2 queue depth). */
  get queued(): number {
    return this.#waiting.length;
  }
}
