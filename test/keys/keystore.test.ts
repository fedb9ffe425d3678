import { chmodSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { calculateJwkThumbprint } from 'jose';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { systemClock } from '../../src/clock.js';
import { KeystoreError, loadKeystore } from '../../src/keys/keystore.js';

let root: string;
let dir: string;
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'tessera-keys-'));
  dir = join(root, 'keys');
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

const load = () => loadKeystore({ dir, clock: systemClock });
const failure = async (): Promise<KeystoreError> => {
  const err = await load().then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(KeystoreError);
  return err as KeystoreError;
};

describe('keystore', () => {
  it('creates one RSA-2048 key in a 0700 directory as a 0600 file named by its RFC 7638 thumbprint', async () => {
    const keystore = await load();
    const { kid, publicJwk } = keystore.active;
    expect(kid).toBe(await calculateJwkThumbprint(publicJwk, 'sha256'));
    expect(readdirSync(dir)).toEqual([`${kid}.json`]);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(statSync(join(dir, `${kid}.json`)).mode & 0o777).toBe(0o600);
    expect(Buffer.from(publicJwk.n!, 'base64url').length * 8).toBe(2048);
  });

  it('publishes only public members', async () => {
    const { keys } = (await load()).publicJwks();
    expect(keys).toHaveLength(1);
    expect(Object.keys(keys[0]!).sort()).toEqual(['alg', 'e', 'kid', 'kty', 'n', 'use']);
    expect(keys[0]).toMatchObject({ kty: 'RSA', alg: 'RS256', use: 'sig' });
  });

  it('loads the same key on the next start instead of creating another', async () => {
    const first = await load();
    const second = await load();
    expect(second.active.kid).toBe(first.active.kid);
    expect(readdirSync(dir)).toHaveLength(1);
  });

  it('stops on a corrupt key file, naming it, and never replaces it', async () => {
    const { kid } = (await load()).active;
    const path = join(dir, `${kid}.json`);
    writeFileSync(path, '{"kid": "broken"', { mode: 0o600 });
    const err = await failure();
    expect(err.code).toBe('ERR_KEY_FILE');
    expect(err.message).toContain(path);
    expect(readdirSync(dir)).toEqual([`${kid}.json`]);
    expect(readFileSync(path, 'utf8')).toBe('{"kid": "broken"');
  });

  it('stops on a key file whose kid is not its thumbprint', async () => {
    const { kid } = (await load()).active;
    const path = join(dir, `${kid}.json`);
    const file = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
    writeFileSync(path, JSON.stringify({ ...file, kid: 'someone-elses-kid' }), { mode: 0o600 });
    expect((await failure()).message).toContain('kid does not match');
  });

  it('stops on a key file other users can read, naming it', async () => {
    const { kid } = (await load()).active;
    const path = join(dir, `${kid}.json`);
    chmodSync(path, 0o644);
    const err = await failure();
    expect(err.message).toContain(path);
    expect(err.message).toContain('chmod 600');
  });

  it('stops on an unreadable key file, naming it', async () => {
    writeFileSync(join(root, 'placeholder'), '');
    const { kid } = (await load()).active;
    const path = join(dir, `${kid}.json`);
    rmSync(path);
    // A directory where a key file should be: exists, cannot be read as a file (works even as root).
    const { mkdirSync } = await import('node:fs');
    mkdirSync(path, { mode: 0o700 });
    const err = await failure();
    expect(err.message).toContain(path);
  });
});
