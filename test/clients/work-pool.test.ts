import { describe, expect, it } from 'vitest';

import { Overloaded, WorkPool } from '../../src/clients/work-pool.js';

const deferred = () => {
  let release!: () => void;
  const promise = new Promise<void>((resolve) => (release = resolve));
  return { promise, release };
};

describe('WorkPool', () => {
  it('runs at most `concurrency` at once, queues up to `queueLimit`, refuses the rest at once', async () => {
    const pool = new WorkPool(2, 1);
    const gates = [deferred(), deferred(), deferred()];
    let running = 0;
    let peak = 0;
    const job = (i: number) => () => {
      running += 1;
      peak = Math.max(peak, running);
      return gates[i]!.promise.then(() => {
        running -= 1;
        return i;
      });
    };
    const results = [pool.run(job(0)), pool.run(job(1)), pool.run(job(2))];
    expect(pool.queued).toBe(1);
    await expect(pool.run(() => Promise.resolve(99))).rejects.toBeInstanceOf(Overloaded);

    gates.forEach((g) => g.release());
    expect(await Promise.all(results)).toEqual([0, 1, 2]);
    expect(peak).toBe(2);
    expect(pool.queued).toBe(0);
  });

  it('frees its slot when work fails', async () => {
    const pool = new WorkPool(1, 0);
    await expect(pool.run(() => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect(await pool.run(() => Promise.resolve('next'))).toBe('next');
  });
});
