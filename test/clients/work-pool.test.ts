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
    const results = [pool.run('other', job(0)), pool.run('other', job(1)), pool.run('other', job(2))];
    expect(pool.queued).toBe(1);
    await expect(pool.run('other', () => Promise.resolve(99))).rejects.toBeInstanceOf(Overloaded);

    gates.forEach((g) => g.release());
    expect(await Promise.all(results)).toEqual([0, 1, 2]);
    expect(peak).toBe(2);
    expect(pool.queued).toBe(0);
  });

  it('frees its slot when work fails', async () => {
    const pool = new WorkPool(1, 0);
    await expect(pool.run('held', () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect(await pool.run('held', () => Promise.resolve('next'))).toBe('next');
  });

  it('keeps a lane of its own for work on secrets Tessera holds, served first', async () => {
    const pool = new WorkPool(1, 1);
    const gate = deferred();
    const order: string[] = [];
    const job = (name: string) => () => {
      order.push(name);
      return name === 'first' ? gate.promise : Promise.resolve();
    };
    const running = pool.run('other', job('first'));
    const decoy = pool.run('other', job('decoy'));
    // The other lane is full; the held lane is not, and goes first when the slot frees.
    await expect(pool.run('other', job('refused'))).rejects.toBeInstanceOf(Overloaded);
    const held = pool.run('held', job('held'));
    expect(pool.queued).toBe(2);
    gate.release();
    await Promise.all([running, decoy, held]);
    expect(order).toEqual(['first', 'held', 'decoy']);
  });
});
