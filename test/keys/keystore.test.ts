import { chmodSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { generateKeyPairSync } from 'node:crypto';

import { calculateJwkThumbprint, type JWK } from 'jose';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { generateKeyFile } from '../../src/keys/key-file.js';
import { KeyManager, type KeyPolicy } from '../../src/keys/key-manager.js';
import { KeystoreError } from '../../src/keys/keystore.js';
import { TestClock } from '../support/harness.js';

let root: string;
let dir: string;
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'tessera-keys-'));
  dir = join(root, 'keys');
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

const policy = (overrides: Partial<KeyPolicy> = {}): KeyPolicy => ({
  dir,
  modulusLength: 2048,
  jwksMaxAge: 300,
  reloadInterval: 5,
  retention: 3600,
  rotationDays: 0,
  clock: new TestClock(1_800_000_000_000),
  ...overrides,
});
const open = (overrides: Partial<KeyPolicy> = {}) => KeyManager.open(policy(overrides), () => Promise.resolve());
const keyFiles = () => readdirSync(dir).filter((n) => n.endsWith('.json'));
const failure = async (): Promise<KeystoreError> => {
  const err = await open().then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(KeystoreError);
  return err as KeystoreError;
};

describe('key files', () => {
  it('creates one RSA-2048 key in a 0700 directory as a 0600 file named by its RFC 7638 thumbprint', async () => {
    const { active } = (await open()).current;
    expect(active.kid).toBe(await calculateJwkThumbprint(active.publicJwk!, 'sha256'));
    expect(keyFiles()).toEqual([`${active.kid}.json`]);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(statSync(join(dir, `${active.kid}.json`)).mode & 0o777).toBe(0o600);
    expect(Buffer.from(active.publicJwk!.n!, 'base64url').length * 8).toBe(2048);
  });

  it.each([3072, 4096])('creates %i-bit keys when configured', async (bits) => {
    const { active } = (await open({ modulusLength: bits })).current;
    expect(Buffer.from(active.publicJwk!.n!, 'base64url').length * 8).toBe(bits);
  });

  it('publishes only public members', async () => {
    const { keys } = (await open()).current.publicJwks();
    expect(keys).toHaveLength(1);
    expect(Object.keys(keys[0]!).sort()).toEqual(['alg', 'e', 'kid', 'kty', 'n', 'use']);
    expect(keys[0]).toMatchObject({ kty: 'RSA', alg: 'RS256', use: 'sig' });
  });

  it('loads the same key on the next start instead of creating another', async () => {
    const first = await open();
    const second = await open();
    expect(second.current.active.kid).toBe(first.current.active.kid);
    expect(keyFiles()).toHaveLength(1);
  });

  it('stops on a corrupt key file, naming it, and never replaces it', async () => {
    const { kid } = (await open()).current.active;
    const path = join(dir, `${kid}.json`);
    writeFileSync(path, '{"kid": "broken"', { mode: 0o600 });
    const err = await failure();
    expect(err.code).toBe('ERR_KEY_FILE');
    expect(err.message).toContain(path);
    expect(keyFiles()).toEqual([`${kid}.json`]);
    expect(readFileSync(path, 'utf8')).toBe('{"kid": "broken"');
  });

  it('stops on a key file whose kid is not its thumbprint', async () => {
    const { kid } = (await open()).current.active;
    const path = join(dir, `${kid}.json`);
    const file = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
    writeFileSync(path, JSON.stringify({ ...file, kid: 'someone-elses-kid' }), { mode: 0o600 });
    expect((await failure()).message).toContain('kid does not match');
  });

  it('stops on a key file other users can read, naming it', async () => {
    const { kid } = (await open()).current.active;
    const path = join(dir, `${kid}.json`);
    chmodSync(path, 0o644);
    const err = await failure();
    expect(err.message).toContain(path);
    expect(err.message).toContain('chmod 600');
  });

  it('stops on an unreadable key file, naming it', async () => {
    const { kid } = (await open()).current.active;
    const path = join(dir, `${kid}.json`);
    rmSync(path);
    // A directory where a key file should be: it exists and cannot be read as a file, even by root.
    mkdirSync(path, { mode: 0o700 });
    expect((await failure()).message).toContain(path);
  });
  it('says a file is not valid JSON without quoting any of it (it may hold key material)', async () => {
    const { kid } = (await open()).current.active;
    const path = join(dir, `${kid}.json`);
    const text = readFileSync(path, 'utf8');
    // The opening quote of d's value removed: the parser's own message would quote what follows.
    writeFileSync(path, text.replace('"d": "', '"d": '), { mode: 0o600 });
    const { d } = (JSON.parse(text) as { private_jwk: JWK }).private_jwk;
    const err = await failure();
    expect(err.message).toBe(`key file ${path} is corrupt: not valid JSON`);
    expect(JSON.stringify({ message: err.message, cause: String(err.cause) })).not.toContain(d!.slice(0, 8));
  });

  /** Writes `jwk` as the active key of a fresh directory, under its own thumbprint. */
  async function plantActive(jwk: JWK, name?: string): Promise<string> {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const kid = await calculateJwkThumbprint(jwk, 'sha256');
    const file = { kid, alg: 'RS256', state: 'active', created_at: 1, activate_after: null, activated_at: 1, retired_at: null, revoked_at: null, private_jwk: jwk };
    const path = join(dir, name ?? `${kid}.json`);
    writeFileSync(path, JSON.stringify(file), { mode: 0o600 });
    return path;
  }
  const rsaJwk = (bits: number) => generateKeyPairSync('rsa', { modulusLength: bits }).privateKey.export({ format: 'jwk' }) as JWK;

  it('stops on a key shorter than 2048 bits, which every token request would then fail with', async () => {
    const path = await plantActive(rsaJwk(1024));
    const err = await failure();
    expect(err.message).toBe(`key file ${path} is corrupt: the key has 1024 bits; RS256 needs 2048 at least`);
  });

  it('stops on a private key that does not belong to its n and e, whose tokens no gateway could verify', async () => {
    const [a, b] = [rsaJwk(2048), rsaJwk(2048)];
    const path = await plantActive({ ...b, n: a.n, e: a.e });
    expect((await failure()).message).toBe(`key file ${path} is corrupt: the private key does not match the public key (n, e)`);
  });

  it('stops on a private key without the CRT members the engine needs', async () => {
    const { kty, n, e, d } = rsaJwk(2048);
    const path = await plantActive({ kty, n, e, d });
    expect((await failure()).message).toBe(`key file ${path} is corrupt: the private key lacks p, q, dp, dq, qi`);
  });

  it('stops on a copy of a key file under another name, naming it', async () => {
    const { kid } = (await open()).current.active;
    const copy = join(dir, `backup-${kid}.json`);
    writeFileSync(copy, readFileSync(join(dir, `${kid}.json`)), { mode: 0o600 });
    expect((await failure()).message).toBe(`key file ${copy} is corrupt: it holds key ${kid}, whose file is ${kid}.json`);
  });
});

describe('generateKeyFile', () => {
  it('dates a key when it exists, not when its generation began', async () => {
    let now = 1_000_000;
    const generating = generateKeyFile(2048, { now: () => now }, 'next', 305);
    now = 2_000_000; // generation runs on its own thread and takes a while; the clock moves meanwhile
    const file = await generating;
    expect({ created_at: file.created_at, activate_after: file.activate_after }).toEqual({ created_at: 2000, activate_after: 2305 });
  });
});
