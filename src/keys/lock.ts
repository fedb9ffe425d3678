/**
 * The keys directory's lock, so two processes (servers, CLIs) sharing it never change key states
 * at the same time: a lock the kernel holds for its process (db/database.ts FileLock), released
 * when the work is done or the process ends, crash included.
 */
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { FileLock } from '../db/database.js';
import { KeystoreError } from './key-file.js';

/** The lock file in the keys directory. */
export const LOCK_FILE = '.keys.lock';
// Longer than any change under the lock takes (a 4096-bit key is generated in a few seconds).
const WAIT_MS = 40_000;

export async function withKeyLock<T>(dir: string, work: () => Promise<T>): Promise<T> {
  const lock = new FileLock(join(dir, LOCK_FILE));
  try {
    const deadline = Date.now() + WAIT_MS;
    for (let attempt = 0; !lock.tryLock(); attempt += 1) {
      if (Date.now() > deadline) throw new KeystoreError('ERR_KEY_LOCK', `keys directory ${dir} is locked by another process; try again`);
      await sleep(Math.min(25 * 2 ** attempt, 250));
    }
    return await work();
  } finally {
    lock.close();
  }
}
