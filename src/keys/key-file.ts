/**
 * One signing key on disk: `<kid>.json`, mode 0600, in a 0700 directory. Written under a
 * temporary name and renamed, so a crash never leaves a partial key; a revoked key keeps only a
 * tombstone, without its private members.
 */
import { createHash, createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { open, readFile, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { Worker } from 'node:worker_threads';

import { calculateJwkThumbprint, exportJWK, type JWK } from 'jose';

import { epochSeconds, type Clock } from '../clock.js';

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
  /** A retired key's file may be deleted from this time (epoch seconds); absent in older files. */
  remove_after?: number | null;
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

  let file: KeyFile;
  try {
    file = JSON.parse(raw) as KeyFile;
  } catch {
    // Not the parser's message: it quotes the text around the fault, which may be key material.
    throw new KeystoreError('ERR_KEY_FILE', `key file ${path} is corrupt: not valid JSON`);
  }
  try {
    if (file.alg !== SIGNING_ALG || !STATES.includes(file.state) || typeof file.kid !== 'string' || typeof file.created_at !== 'number') {
      throw new Error('not an RS256 key file');
    }
    const jwk = file.state === 'revoked' ? undefined : file.private_jwk;
    if (file.state !== 'revoked') {
      if (jwk?.kty !== 'RSA' || typeof jwk.d !== 'string') throw new Error('no RSA private key');
      if ((await calculateJwkThumbprint(jwk, 'sha256')) !== file.kid) throw new Error('kid does not match the key thumbprint');
    }
    // A copy under another name would be a second key with the same kid (two active keys, say).
    if (basename(path) !== `${file.kid}.json`) throw new Error(`it holds key ${file.kid}, whose file is ${file.kid}.json`);
    if (jwk) checkPrivateKey(jwk);
    return file;
  } catch (cause) {
    throw new KeystoreError('ERR_KEY_FILE', `key file ${path} is corrupt: ${(cause as Error).message}`);
  }
}

const MIN_MODULUS_LENGTH = 2048;
const CRT_MEMBERS = ['p', 'q', 'dp', 'dq', 'qi'] as const;
const PROBE = Buffer.from('tessera signing-key probe');
/** Digests of private keys already found sound: the directory is re-read every reload interval. */
const sound = new Set<string>();

/**
 * A key that loads must sign tokens gateways can verify: RFC 7518 §3.3's 2048 bits at least, the
 * CRT members the engine requires, and a private half that belongs to the published n and e (a
 * signature made with it verifies against them). Anything less would pass start-up and then fail
 * every token request, or issue tokens no gateway accepts.
 */
function checkPrivateKey(jwk: JWK): void {
  const missing = CRT_MEMBERS.filter((m) => typeof jwk[m] !== 'string' || jwk[m] === '');
  if (missing.length > 0) throw new Error(`the private key lacks ${missing.join(', ')}`);
  const digest = createHash('sha256').update(JSON.stringify([jwk.n, jwk.e, jwk.d, ...CRT_MEMBERS.map((m) => jwk[m])])).digest('base64url');
  if (sound.has(digest)) return;
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey({ key: { kty: 'RSA', n: jwk.n, e: jwk.e, d: jwk.d, p: jwk.p, q: jwk.q, dp: jwk.dp, dq: jwk.dq, qi: jwk.qi }, format: 'jwk' });
  } catch {
    throw new Error('the private key cannot be loaded');
  }
  const bits = privateKey.asymmetricKeyDetails?.modulusLength ?? 0;
  if (bits < MIN_MODULUS_LENGTH) throw new Error(`the key has ${bits} bits; RS256 needs ${MIN_MODULUS_LENGTH} at least`);
  const publicKey = createPublicKey({ key: { kty: 'RSA', n: jwk.n, e: jwk.e }, format: 'jwk' });
  let verified = false;
  try {
    verified = verify('sha256', PROBE, publicKey, sign('sha256', PROBE, privateKey));
  } catch {
    // an inconsistent private key may fail to sign at all
  }
  if (!verified) throw new Error('the private key does not match the public key (n, e)');
  sound.add(digest);
}

export async function writeKeyFile(dir: string, file: KeyFile): Promise<void> {
  const path = keyPath(dir, file.kid);
  const tmp = `${path}.${process.pid}.${Date.now()}${TMP_SUFFIX}`;
  try {
    const handle = await open(tmp, 'wx', 0o600);
    try {
      await handle.writeFile(JSON.stringify(file, null, 2));
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, path);
  } catch (err) {
    // A half-written copy may hold a private key that will never be used.
    await rm(tmp, { force: true });
    throw err;
  }
  await syncDirectory(dirname(path));
}

export async function removeKeyFile(dir: string, kid: string): Promise<void> {
  await rm(keyPath(dir, kid), { force: true });
  await syncDirectory(dir);
}

/** What writeKeyFile writes before its rename; one left behind was cut off by a crash. */
export const TMP_SUFFIX = '.tmp';

/** A rename or removal survives a power loss only once its directory is synced: a revocation must. */
async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
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

/**
 * A new RSA key of `modulusLength` bits, as a key file in the given state (not yet written). Its
 * times are read once the key exists: generating one can take seconds, and a `next` key's wait
 * (`activateIn`, seconds) must count from when it can first be published.
 */
export async function generateKeyFile(modulusLength: number, clock: Clock, state: 'next' | 'active', activateIn: number | null): Promise<KeyFile> {
  const privateKey = await generateRsaKey(modulusLength);
  const jwk = await exportJWK(privateKey);
  const now = epochSeconds(clock);
  return {
    kid: await calculateJwkThumbprint(jwk, 'sha256'),
    alg: SIGNING_ALG,
    state,
    created_at: now,
    activate_after: state === 'next' ? now + (activateIn ?? 0) : null,
    activated_at: state === 'active' ? now : null,
    retired_at: null,
    revoked_at: null,
    private_jwk: jwk,
  };
}
