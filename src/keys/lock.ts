/**
 * A lock file in the keys directory, so two processes (servers, CLIs) sharing it never change
 * key states at the same time: created with O_EXCL, its time refreshed while held, removed only by
 * its owner, and broken only when its holder has clearly died (not refreshed for STALE_MS).
 */
import { randomUUID } from 'node:crypto';
import { open, readFile, rm, stat, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { KeystoreError } from './key-file.js';

const STALE_MS = 30_000;
const HEARTBEAT_MS = 5_000;
const WAIT_MS = 15_000;

async function acquire(path: string, owner: string): Promise<boolean> {
  try {
    const handle = await open(path, 'wx', 0o600);
    await handle.writeFile(JSON.stringify({ owner, pid: process.pid, at: new Date().toISOString() }));
    await handle.close();
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    return false;
  }
}

const ownerOf = async (path: string): Promise<string | undefined> =>
  readFile(path, 'utf8').then(
    (raw) => (JSON.parse(raw) as { owner?: string }).owner,
    () => undefined,
  );

export async function withKeyLock<T>(dir: string, work: () => Promise<T>): Promise<T> {
  const path = join(dir, '.lock');
  const owner = randomUUID();
  const deadline = Date.now() + WAIT_MS;
  for (let attempt = 0; !(await acquire(path, owner)); attempt += 1) {
    const age = await stat(path).then((s) => Date.now() - s.mtimeMs, () => 0);
    // A holder refreshes its lock every few seconds; one untouched for STALE_MS is dead.
    if (age > STALE_MS) {
      const stale = await ownerOf(path);
      if (stale !== undefined && (await ownerOf(path)) === stale) await rm(path, { force: true });
      continue;
    }
    if (Date.now() > deadline) {
      const holder = await readFile(path, 'utf8').catch(() => 'unknown');
      throw new KeystoreError('ERR_KEY_LOCK', `keys directory ${dir} is locked by another process (${holder}); try again`);
    }
    await sleep(Math.min(25 * 2 ** attempt, 250));
  }

  const heartbeat = setInterval(() => {
    const now = new Date();
    void utimes(path, now, now).catch(() => {});
  }, HEARTBEAT_MS);
  heartbeat.unref();
  try {
    return await work();
  } finally {
    clearInterval(heartbeat);
    if ((await ownerOf(path)) === owner) await rm(path, { force: true });
  }
}
