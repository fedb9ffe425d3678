/**
 * One signing key on disk: `<kid>.json`, mode 0600, in a 0700 directory. Written under a
 * temporary name and renamed, so a crash never leaves a partial key; a revoked key keeps only a
 * tombstone, without its private members.
 */
import type { KeyObject } from 'node:crypto';
import { open, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';

import { calculateJwkThumbprint, exportJWK, type JWK } from 'jose';

export const SIGNING_ALG = 'RS256';

export type KeyState = 'next' | 'active' | 'retired' | 'revoked';

export interface KeyFile {
  kid: string;
  alg: typeof SIGNING_ALG;
  state: KeyState;
  created_at: number;
  /** A `next` key may become active from this time (epoch seconds). */
  activate_after: number | null;
  activated_at: number | null;
  retired_at: number | null;
  revoked_at: number | null;
  /** Absent once revoked. */
  private_jwk?: JWK;
}

export class KeystoreError extends Error {
  constructor(
    readonly code: 'ERR_KEY_FILE' | 'ERR_KEYS_DIR' | 'ERR_NO_ACTIVE_KEY' | 'ERR_KEY_LOCK' | 'ERR_UNKNOWN_KEY',
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = 'KeystoreError';
  }
}

const STATES: readonly KeyState[] = ['next', 'active', 'retired', 'revoked'];

export const keyPath = (dir: string, kid: string): string => join(dir, `${kid}.json`);

/** Reads and checks one key file; anything untrustworthy is a KeystoreError naming the file. */
export async function readKeyFile(path: string): Promise<KeyFile> {
  let raw: string;
  try {
    const { mode } = await stat(path);
    if ((mode & 0o077) !== 0) {
      throw new KeystoreError('ERR_KEY_FILE', `key file ${path} is readable by other users (mode ${(mode & 0o777).toString(8)}); run chmod 600 on it`);
    }
    raw = await readFile(path, 'utf8');
  } catch (cause) {
    if (cause instanceof KeystoreError) throw cause;
    throw new KeystoreError('ERR_KEY_FILE', `key file ${path} cannot be read`, { cause });
  }

  try {
    const file = JSON.parse(raw) as KeyFile;
    if (file.alg !== SIGNING_ALG || !STATES.includes(file.state) || typeof file.kid !== 'string' || typeof file.created_at !== 'number') {
      throw new Error('not an RS256 key file');
    }
    if (file.state === 'revoked') return file;
    const jwk = file.private_jwk;
    if (jwk?.kty !== 'RSA' || typeof jwk.d !== 'string') throw new Error('no RSA private key');
    if ((await calculateJwkThumbprint(jwk, 'sha256')) !== file.kid) throw new Error('kid does not match the key thumbprint');
    return file;
  } catch (cause) {
    throw new KeystoreError('ERR_KEY_FILE', `key file ${path} is corrupt: ${(cause as Error).message}`, { cause });
  }
}

export async function writeKeyFile(dir: string, file: KeyFile): Promise<void> {
  const path = keyPath(dir, file.kid);
  const tmp = `${path}.${process.pid}.${Date.now()}.tmp`;
  const handle = await open(tmp, 'wx', 0o600);
  try {
    await handle.writeFile(JSON.stringify(file, null, 2));
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(tmp, path);
}

export async function removeKeyFile(dir: string, kid: string): Promise<void> {
  await rm(keyPath(dir, kid), { force: true });
}

/**
 * The server's libuv pool, which signs every token, may have a single thread (main.cts), and
 * crypto.generateKeyPair would hold it for the whole search for primes: up to seconds for a
 * 4096-bit key, with every token request waiting behind it. A thread of its own generates the key
 * instead; a KeyObject crosses to this thread intact.
 */
function generateRsaKey(modulusLength: number): Promise<KeyObject> {
  return new Promise((resolve, reject) => {
    // Dynamic imports, which a script and a module accept alike (a parent's --input-type once made it a module).
    const worker = new Worker(
      `Promise.all([import('node:crypto'), import('node:worker_threads')]).then(([{ generateKeyPairSync }, { parentPort, workerData }]) =>
         parentPort.postMessage(generateKeyPairSync('rsa', { modulusLength: workerData, publicExponent: 0x10001 }).privateKey));`,
      // No preloads or profilers of the server's command line: this thread only needs node:crypto.
      { eval: true, workerData: modulusLength, execArgv: [] },
    );
    worker.once('message', (key: KeyObject) => {
      resolve(key);
      void worker.terminate();
    });
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`key generation thread exited with code ${code}`)));
  });
}

/** A new RSA key of `modulusLength` bits, as a key file in the given state (not yet written). */
export async function generateKeyFile(modulusLength: number, now: number, state: 'next' | 'active', activateAfter: number | null): Promise<KeyFile> {
  const privateKey = await generateRsaKey(modulusLength);
  const jwk = await exportJWK(privateKey);
  return {
    kid: await calculateJwkThumbprint(jwk, 'sha256'),
    alg: SIGNING_ALG,
    state,
    created_at: now,
    activate_after: state === 'next' ? activateAfter : null,
    activated_at: state === 'active' ? now : null,
    retired_at: null,
    revoked_at: null,
    private_jwk: jwk,
  };
}
