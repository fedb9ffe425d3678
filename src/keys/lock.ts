/**
 * A lock file in the keys directory, so two processes (servers, CLIs) sharing it never change
 * key states at the same time: created with O_EXCL, removed when done, broken when its holder
 * has clearly died (older than STALE_MS).
 */
import { open, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { KeystoreError } from './key-file.js';

const STALE_MS = 30_000;
const WAIT_MS = 10_000;

export async function withKeyLock<T>(dir: string, work: () => Promise<T>): Promise<T> {
  const path = join(dir, '.lock');
  const deadline = Date.now() + WAIT_MS;
  for (let attempt = 0; ; attempt += 1) {
    try {
      const handle = await open(path, 'wx', 0o600);
      await handle.writeFile(JSON.stringify({ pid: process.pid, at: new Date().toISOString() }));
      await handle.close();
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const age = await stat(path).then((s) => Date.now() - s.mtimeMs, () => 0);
      if (age > STALE_MS) {
        await rm(path, { force: true });
        continue;
      }
      if (Date.now() > deadline) {
        const holder = await readFile(path, 'utf8').catch(() => 'unknown');
        throw new KeystoreError('ERR_KEY_LOCK', `keys directory ${dir} is locked by another process (${holder}); try again`);
      }
      await sleep(Math.min(25 * 2 ** attempt, 250));
    }
  }
  try {
    return await work();
  } finally {
    await rm(path, { force: true });
  }
}
