/**
 * A lock file in the keys directory, so two processes (servers, CLIs) sharing it never change
 * key states at the same time: created with O_EXCL, its time refreshed while held, removed only by
 * its owner, and broken only when its holder has died: a process of this host that no longer
 * exists, or (for a directory shared between hosts) a lock not refreshed for STALE_MS.
 */
import { randomUUID } from 'node:crypto';
import { open, readFile, rm, stat, utimes } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { KeystoreError } from './key-file.js';

const STALE_MS = 30_000;
const HEARTBEAT_MS = 5_000;
// Longer than STALE_MS, so a waiter outlasts a holder on another host that died.
const WAIT_MS = STALE_MS + 10_000;

interface LockHolder {
  readonly owner?: string;
  readonly pid?: number;
  readonly host?: string;
}

/** The owners of the lock files this process holds (or is creating) now. */
const heldHere = new Set<string>();

/** Creates the lock file; the caller releases it with `release`. */
async function acquire(path: string, owner: string): Promise<boolean> {
  // Known before the file exists: another waiter of this process must never judge it dead.
  heldHere.add(owner);
  try {
    const handle = await open(path, 'wx', 0o600);
    await handle.writeFile(JSON.stringify({ owner, pid: process.pid, host: hostname(), at: new Date().toISOString() }));
    await handle.close();
    return true;
  } catch (err) {
    heldHere.delete(owner);
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    return false;
  }
}

async function release(path: string, owner: string): Promise<void> {
  heldHere.delete(owner);
  if ((await ownerOf(path)) === owner) await rm(path, { force: true });
}

/**
 * Who holds the lock; undefined when there is no lock, or when its holder has created it but not
 * yet written its name (O_EXCL creates the file empty).
 */
const holderOf = async (path: string): Promise<LockHolder | undefined> => {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as LockHolder;
  } catch {
    return undefined;
  }
};
const ageOf = async (path: string) => stat(path).then((s) => Date.now() - s.mtimeMs, () => 0);
const ownerOf = async (path: string) => (await holderOf(path))?.owner;

/**
 * Pids mean something only on the host that wrote them. A lock with this process's own pid that
 * this process does not hold was left by an earlier process with the same pid: in a container
 * restarted after a crash, the server is PID 1 again, on the same hostname.
 */
function deadOnThisHost(holder: LockHolder | undefined): boolean {
  if (holder?.host !== hostname() || typeof holder.pid !== 'number') return false;
  if (holder.pid === process.pid) return holder.owner !== undefined && !heldHere.has(holder.owner);
  try {
    process.kill(holder.pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

/**
 * Removes the lock if it is still the one judged dead. Checking and removing are two steps, so two
 * waiters doing both at once could remove a lock a third took in between: they do it one at a time,
 * under a second lock file held only for those two steps (and broken like the first when its
 * holder died).
 */
async function breakDeadLock(path: string, judged: LockHolder | undefined, owner: string): Promise<void> {
  const breaker = `${path}.break`;
  if (!(await acquire(breaker, owner))) {
    if ((await ageOf(breaker)) > STALE_MS || deadOnThisHost(await holderOf(breaker))) await rm(breaker, { force: true });
    return;
  }
  try {
    // The same owner or, for a holder that died before writing its name, still nameless and still stale.
    const same = judged?.owner !== undefined ? (await ownerOf(path)) === judged.owner : (await holderOf(path)) === undefined && (await ageOf(path)) > STALE_MS;
    if (same) await rm(path, { force: true });
  } finally {
    await release(breaker, owner);
  }
}

export async function withKeyLock<T>(dir: string, work: () => Promise<T>): Promise<T> {
  const path = join(dir, '.lock');
  const owner = randomUUID();
  const deadline = Date.now() + WAIT_MS;
  for (let attempt = 0; !(await acquire(path, owner)); attempt += 1) {
    const age = await ageOf(path);
    const holder = await holderOf(path);
    // A holder refreshes its lock every few seconds; one untouched for STALE_MS, or whose process
    // is gone, is dead (e.g. a server stopped or killed in the middle of a key change).
    if (age > STALE_MS || deadOnThisHost(holder)) {
      await breakDeadLock(path, holder, owner);
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
    await release(path, owner);
  }
}
