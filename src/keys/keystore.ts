/**
 * Signing keys in KEYS_DIR: one JSON file per key, `<kid>.json`, mode 0600 in a 0700 directory.
 * The kid is the RFC 7638 thumbprint. RS256 is the only signing algorithm.
 *
 * A key file that exists but cannot be trusted (unreadable, corrupt, readable by others) stops
 * start-up with a message naming it; a replacement is generated only when the directory holds no
 * key at all, so an operator's key is never silently swapped.
 */
import { createPublicKey, generateKeyPair, type KeyObject } from 'node:crypto';
import { chmod, mkdir, open, readdir, readFile, rename, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

import { calculateJwkThumbprint, exportJWK, type JWK } from 'jose';

import { epochSeconds, type Clock } from '../clock.js';

export const SIGNING_ALG = 'RS256';

export class KeystoreError extends Error {
  constructor(
    readonly code: 'ERR_KEY_FILE' | 'ERR_KEYS_DIR' | 'ERR_NO_ACTIVE_KEY',
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = 'KeystoreError';
  }
}

export type KeyState = 'active';

/** On-disk shape of a key file. */
interface KeyFile {
  kid: string;
  alg: typeof SIGNING_ALG;
  state: KeyState;
  created_at: number;
  activated_at: number | null;
  private_jwk: JWK;
}

export interface SigningKey {
  readonly kid: string;
  readonly state: KeyState;
  readonly createdAt: number;
  readonly activatedAt: number | null;
  /** Private JWK with kid, alg and use set; never leaves the process except to the signer. */
  readonly privateJwk: JWK;
  readonly publicJwk: JWK;
  /** The public key, parsed once, for verifying tokens this key signed. */
  readonly verificationKey: KeyObject;
}

const PUBLIC_MEMBERS = ['kty', 'n', 'e'] as const;

export class Keystore {
  readonly #byKid: ReadonlyMap<string, SigningKey>;

  constructor(private readonly keys: readonly SigningKey[]) {
    this.#byKid = new Map(keys.map((k) => [k.kid, k]));
  }

  /** The public key of a kid whose tokens are still accepted, or undefined. */
  verificationKey(kid: string): KeyObject | undefined {
    return this.#byKid.get(kid)?.verificationKey;
  }

  /** The one key that signs. */
  get active(): SigningKey {
    const key = this.keys.find((k) => k.state === 'active');
    if (!key) throw new KeystoreError('ERR_NO_ACTIVE_KEY', 'no active signing key');
    return key;
  }

  /** Every key, for operators: never the private members. */
  list(): readonly SigningKey[] {
    return this.keys;
  }

  /** The public JWK Set (RFC 7517) gateways verify with. */
  publicJwks(): { keys: JWK[] } {
    return { keys: this.keys.map((k) => k.publicJwk) };
  }

  /** Private JWKs for the token signer. */
  privateJwks(): { keys: JWK[] } {
    return { keys: this.keys.map((k) => k.privateJwk) };
  }
}

export interface LoadKeysOptions {
  readonly dir: string;
  readonly clock: Clock;
  /** RSA modulus length for a generated key. */
  readonly modulusLength?: number;
}

/** Loads every key in the directory, creating the directory and a first key when there is none. */
export async function loadKeystore(options: LoadKeysOptions): Promise<Keystore> {
  const { dir } = options;
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const dirStat = await stat(dir);
  if ((dirStat.mode & 0o077) !== 0) {
    // Created by someone else with a loose umask: tighten rather than refuse, the files are checked one by one.
    await chmod(dir, 0o700).catch((cause: unknown) => {
      throw new KeystoreError('ERR_KEYS_DIR', `keys directory ${dir} is accessible by other users and cannot be restricted to 0700`, { cause });
    });
  }

  const names = (await readdir(dir)).filter((n) => n.endsWith('.json')).sort();
  const keys = await Promise.all(names.map((name) => readKeyFile(join(dir, name))));
  if (keys.length === 0) keys.push(await createKey(options));
  if (keys.filter((k) => k.state === 'active').length !== 1) {
    throw new KeystoreError('ERR_NO_ACTIVE_KEY', `keys directory ${dir} must hold exactly one active key`);
  }
  return new Keystore(keys);
}

async function readKeyFile(path: string): Promise<SigningKey> {
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
    const jwk = file.private_jwk;
    if (file.alg !== SIGNING_ALG || file.state !== 'active' || jwk?.kty !== 'RSA' || typeof jwk.d !== 'string') {
      throw new Error('not an RS256 private key file');
    }
    const kid = await calculateJwkThumbprint(jwk, 'sha256');
    if (kid !== file.kid) throw new Error('kid does not match the key thumbprint');
    return toSigningKey(file);
  } catch (cause) {
    throw new KeystoreError('ERR_KEY_FILE', `key file ${path} is corrupt: ${(cause as Error).message}`, { cause });
  }
}

async function createKey({ dir, clock, modulusLength = 2048 }: LoadKeysOptions): Promise<SigningKey> {
  const { privateKey } = await promisify(generateKeyPair)('rsa', { modulusLength, publicExponent: 0x10001 });
  const jwk = await exportJWK(privateKey);
  const kid = await calculateJwkThumbprint(jwk, 'sha256');
  const now = epochSeconds(clock);
  const file: KeyFile = { kid, alg: SIGNING_ALG, state: 'active', created_at: now, activated_at: now, private_jwk: jwk };

  // Written under a temporary name with 0600 from the first byte, then renamed: a crash never leaves a partial key.
  const path = join(dir, `${kid}.json`);
  const tmp = `${path}.${process.pid}.tmp`;
  const handle = await open(tmp, 'wx', 0o600);
  try {
    await handle.writeFile(JSON.stringify(file, null, 2));
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(tmp, path);
  return toSigningKey(file);
}

function toSigningKey(file: KeyFile): SigningKey {
  const meta = { kid: file.kid, alg: SIGNING_ALG, use: 'sig' };
  const publicJwk = Object.fromEntries(PUBLIC_MEMBERS.map((m) => [m, file.private_jwk[m]])) as JWK;
  return {
    kid: file.kid,
    state: file.state,
    createdAt: file.created_at,
    activatedAt: file.activated_at,
    privateJwk: { ...file.private_jwk, ...meta },
    publicJwk: { ...publicJwk, ...meta },
    verificationKey: createPublicKey({ key: { kty: 'RSA', n: publicJwk.n, e: publicJwk.e }, format: 'jwk' }),
  };
}
