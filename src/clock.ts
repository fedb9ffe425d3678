/** Injected wherever expiry matters, so tests control time. */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

/** Whole seconds since the epoch, the unit of every JWT and database timestamp. */
export const epochSeconds = (clock: Clock): number => Math.floor(clock.now() / 1000);
