import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';

import { afterEach, beforeEach, describe, expect, it, onTestFinished } from 'vitest';

import { KeyManager, listKeys, type KeyEventType, type KeyPolicy } from '../../src/keys/key-manager.js';
import { KeystoreError } from '../../src/keys/keystore.js';
import { FileLock } from '../../src/db/database.js';
import { LOCK_FILE, withKeyLock } from '../../src/keys/lock.js';
import { TestClock } from '../support/harness.js';
import { createTestDatabase } from '../support/database.js';
import { ROOT } from '../support/process.js';

let root: string;
let dir: string;
let clock: TestClock;
let events: [KeyEventType, string, Record<string, unknown>][];

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'tessera-keylife-'));
  dir = join(root, 'keys');
  clock = new TestClock(1_800_000_000_000);
  events = [];
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

const POLICY = { jwksMaxAge: 300, reloadInterval: 5, retention: 3600 };
const open = (overrides: Partial<KeyPolicy> = {}) =>
  KeyManager.open({ dir, modulusLength: 2048, rotationDays: 0, clock, ...POLICY, ...overrides }, (type, kid, details) => {
    events.push([type, kid, details]);
    return Promise.resolve();
  });
const published = (keys: KeyManager) => keys.current.publicJwks().keys.map((k) => k.kid);
const stateOf = (keys: KeyManager, kid: string) => keys.current.list().find((k) => k.kid === kid)?.state;

describe('the life of a key', () => {
  it('next (published, not signing) → active → retired (published, accepted) → removed', async () => {
    const keys = await open();
    const a = keys.current.active.kid;

    const { key: b, active, pending } = await keys.rotate({ now: false, actor: 'test' });
    expect({ active, pending }).toEqual({ active: false, pending: false });
    expect(b.state).toBe('next');
    expect(published(keys)).toEqual(expect.arrayContaining([a, b.kid]));
    expect(keys.current.active.kid).toBe(a);

    // Not before every cache and every instance has had the key for a full JWKS lifetime.
    clock.advance(POLICY.jwksMaxAge + POLICY.reloadInterval - 1);
    await keys.tick();
    expect(keys.current.active.kid).toBe(a);

    clock.advance(1);
    await keys.tick();
    expect(keys.current.active.kid).toBe(b.kid);
    expect(stateOf(keys, a)).toBe('retired');
    expect(published(keys)).toEqual(expect.arrayContaining([a, b.kid]));
    expect(keys.current.verificationKey(a)).toBeDefined();

    clock.advance(POLICY.retention - 1);
    await keys.tick();
    expect(keys.current.verificationKey(a)).toBeDefined();

    clock.advance(1);
    await keys.tick();
    expect(published(keys)).toEqual([b.kid]);
    expect(keys.current.verificationKey(a)).toBeUndefined();
    expect(readdirSync(dir).filter((n) => n.endsWith('.json'))).toEqual([`${b.kid}.json`]);

    expect(events.map(([type, kid]) => [type, kid])).toEqual([
      ['key.created', a],
      ['key.created', b.kid],
      ['key.retired', a],
      ['key.activated', b.kid],
      ['key.removed', a],
    ]);
  });

  it('does not start a second rotation while one is pending', async () => {
    const keys = await open();
    const first = await keys.rotate({ now: false, actor: 'test' });
    const second = await keys.rotate({ now: false, actor: 'test' });
    expect(second).toMatchObject({ pending: true, active: false });
    expect(second.key.kid).toBe(first.key.kid);
    expect(keys.current.list()).toHaveLength(2);
  });

  it('promotes at once with now, retiring the previous key', async () => {
    const keys = await open();
    const a = keys.current.active.kid;
    const { key, active } = await keys.rotate({ now: true, actor: 'test' });
    expect(active).toBe(true);
    expect(keys.current.active.kid).toBe(key.kid);
    expect(stateOf(keys, a)).toBe('retired');
  });

  it('rotates on schedule when KEY_ROTATION_DAYS is set', async () => {
    const keys = await open({ rotationDays: 30 });
    clock.advance(30 * 86_400 - 1);
    await keys.tick();
    expect(keys.current.list()).toHaveLength(1);
    clock.advance(1);
    await keys.tick();
    expect(keys.current.list().map((k) => k.state).sort()).toEqual(['active', 'next']);
  });
  it("keeps a retired key for the retention of the process that retired it, whatever another process's", async () => {
    const server = await open({ retention: 7 * 86_400 });
    const a = server.current.active.kid;
    await server.rotate({ now: true, actor: 'server' });
    clock.advance(2 * 86_400);
    // A CLI run without the server's ACCESS_TOKEN_MAX_TTL: its own retention has passed, the server's has not.
    const cli = await open({ retention: 3600 });
    await cli.tick('cli');
    expect(stateOf(cli, a)).toBe('retired');
    expect(existsSync(join(dir, `${a}.json`))).toBe(true);
    clock.advance(5 * 86_400);
    await cli.tick('cli');
    expect(existsSync(join(dir, `${a}.json`))).toBe(false);
  });

  it('leaves transitions to the servers: a CLI run with a shorter retention deletes nothing', async () => {
    const server = await open({ retention: 7 * 86_400 });
    const a = server.current.active.kid;
    const cli = () =>
      KeyManager.open({ dir, modulusLength: 2048, rotationDays: 0, clock, ...POLICY, retention: 3600 }, () => Promise.resolve(), undefined, { existing: true });
    // Retired by the CLI, which records its own (short) retention.
    await (await cli()).rotate({ now: true, actor: 'cli' });
    clock.advance(2 * 3600);
    await cli();
    expect(existsSync(join(dir, `${a}.json`))).toBe(true);
    await server.tick();
    expect(existsSync(join(dir, `${a}.json`))).toBe(true);
    clock.advance(7 * 86_400);
    await server.tick();
    expect(existsSync(join(dir, `${a}.json`))).toBe(false);
  });

  it("activates a next key only after this process's own wait, even if it was made with a shorter one", async () => {
    const cli = await open({ jwksMaxAge: 60 });
    const a = cli.current.active.kid;
    const { key: b } = await cli.rotate({ now: false, actor: 'cli' });
    const server = await open();
    clock.advance(65);
    await server.tick();
    expect(server.current.active.kid).toBe(a);
    clock.advance(POLICY.jwksMaxAge + POLICY.reloadInterval - 65);
    await server.tick();
    expect(server.current.active.kid).toBe(b.kid);
  });

  it('lists keys without changing any (keys list)', async () => {
    const keys = await open();
    const a = keys.current.active.kid;
    await keys.rotate({ now: true, actor: 'test' });
    clock.advance(POLICY.retention + 1);
    const before = readdirSync(dir).sort();
    expect((await listKeys(dir)).map((k) => [k.kid, k.state])).toContainEqual([a, 'retired']);
    expect(readdirSync(dir).sort()).toEqual(before);
    await expect(listKeys(join(root, 'elsewhere'))).rejects.toThrow(/no signing keys/);
  });

  it('deletes what a crashed write left behind, once it holds the lock', async () => {
    const keys = await open();
    const leftover = join(dir, `${keys.current.active.kid}.json.4242.1.tmp`);
    writeFileSync(leftover, '{"private_jwk": {}}', { mode: 0o600 });
    await keys.tick();
    expect(existsSync(leftover)).toBe(false);
  });
});

describe('a snapshot the engine cannot take', () => {
  it('keeps the JWKS, introspection and the signer on the last set, and tries again on the next reload', async () => {
    const keys = await open();
    const a = keys.current.active.kid;
    let refuse = true;
    const taken: string[] = [];
    keys.onChange((keystore) => {
      if (refuse) throw new Error('engine refused the keys');
      taken.push(keystore.active.kid);
    });
    await expect(keys.rotate({ now: true, actor: 'test' })).rejects.toThrow('engine refused the keys');
    expect(keys.current.active.kid).toBe(a);
    refuse = false;
    await keys.reload();
    expect(keys.current.active.kid).not.toBe(a);
    expect(taken).toEqual([keys.current.active.kid]);
  });
});

describe('emergency revocation', () => {
  it('takes the active key out of the JWKS at once and promotes the pending next key', async () => {
    const keys = await open();
    const a = keys.current.active.kid;
    const { key: b } = await keys.rotate({ now: false, actor: 'test' });
    await keys.revoke(a, 'test');
    expect(keys.current.active.kid).toBe(b.kid);
    expect(published(keys)).toEqual([b.kid]);
    expect(keys.current.verificationKey(a)).toBeUndefined();
    expect(stateOf(keys, a)).toBe('revoked');
  });

  it('creates and activates a replacement when no next key waits, and keeps no key material', async () => {
    const keys = await open();
    const a = keys.current.active.kid;
    await keys.revoke(a, 'test');
    expect(keys.current.active.kid).not.toBe(a);
    const tombstone = JSON.parse(readFileSync(join(dir, `${a}.json`), 'utf8')) as Record<string, unknown>;
    expect(tombstone).toMatchObject({ kid: a, state: 'revoked' });
    expect(tombstone.private_jwk).toBeUndefined();
    expect(events.map(([type]) => type)).toContain('key.revoked');

    // A restart does not bring it back.
    expect(published(await open())).not.toContain(a);
  });

  it('revokes a retired key without touching the active one, and refuses an unknown kid', async () => {
    const keys = await open();
    const a = keys.current.active.kid;
    const { key: b } = await keys.rotate({ now: true, actor: 'test' });
    await keys.revoke(a, 'test');
    expect(keys.current.active.kid).toBe(b.kid);
    expect(published(keys)).toEqual([b.kid]);
    await expect(keys.revoke('no-such-kid', 'test')).rejects.toMatchObject({ code: 'ERR_UNKNOWN_KEY' });
    await expect(keys.revoke(a, 'test')).rejects.toBeInstanceOf(KeystoreError);
  });
});

describe('the lock file', () => {
  it('makes a process wait while another holds it, and frees it when that process dies, however it dies', async () => {
    await open();
    const lockModule = pathToFileURL(join(ROOT, 'dist/src/keys/lock.js')).href;
    const holder = spawn(process.execPath, ['--input-type=module', '-e', `
      const { withKeyLock } = await import(${JSON.stringify(lockModule)});
      // Work that waits on a timer, as real work waits on I/O: a promise nothing refers to would let
      // the lock be collected with it.
      await withKeyLock(${JSON.stringify(dir)}, () => { process.stdout.write('held\\n'); return new Promise((r) => setTimeout(r, 600_000)); });`]);
    onTestFinished(() => void holder.kill('SIGKILL'));
    await new Promise<void>((resolve, reject) => {
      holder.stdout.once('data', () => resolve());
      holder.once('exit', (code) => reject(new Error(`holder exited with ${code}`)));
    });
    let acquired = false;
    const waiting = withKeyLock(dir, () => {
      acquired = true;
      return Promise.resolve();
    });
    await new Promise((r) => setTimeout(r, 300));
    expect(acquired).toBe(false);
    // No clean-up runs on SIGKILL: the kernel releases the lock with the process.
    holder.kill('SIGKILL');
    await waiting;
    expect(acquired).toBe(true);
  });

  it('admits one holder at a time among many waiters of one process', async () => {
    await open();
    for (let round = 0; round < 5; round += 1) {
      let inside = 0;
      let most = 0;
      await Promise.all(
        Array.from({ length: 8 }, () =>
          withKeyLock(dir, async () => {
            inside += 1;
            most = Math.max(most, inside);
            await new Promise((r) => setTimeout(r, 5));
            inside -= 1;
          }),
        ),
      );
      expect(most).toBe(1);
    }
  });

  it('is released when the work fails', async () => {
    await open();
    await expect(withKeyLock(dir, () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    const lock = new FileLock(join(dir, LOCK_FILE));
    try {
      expect(lock.tryLock()).toBe(true);
    } finally {
      lock.close();
    }
  });

  it('repairs a directory that shows two active keys, keeping the newest signing', async () => {
    const keys = await open();
    const a = keys.current.active.kid;
    const { key: b } = await keys.rotate({ now: true, actor: 'test' });
    const path = join(dir, `${a}.json`);
    const file = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
    writeFileSync(path, JSON.stringify({ ...file, state: 'active', activated_at: 1, retired_at: null }), { mode: 0o600 });
    await keys.tick();
    expect(keys.current.active.kid).toBe(b.kid);
    expect(stateOf(keys, a)).toBe('retired');
  });
});

describe('several processes sharing the directory', () => {
  it('sees changes made by another manager on reload, and tells its listeners', async () => {
    const server = await open();
    const cli = await open();
    const seen: string[] = [];
    server.onChange((keystore) => seen.push(keystore.active.kid));
    const { key } = await cli.rotate({ now: true, actor: 'cli' });
    await server.reload();
    expect(server.current.active.kid).toBe(key.kid);
    expect(seen).toEqual([key.kid]);
    await server.reload();
    expect(seen).toHaveLength(1);
  });

  it('never ends with two active keys when two managers rotate at the same moment', async () => {
    const managers = await Promise.all([open(), open(), open()]);
    const results = await Promise.all(managers.map((m) => m.rotate({ now: true, actor: 'race' })));
    const files = readdirSync(dir).filter((n) => n.endsWith('.json'));
    const states = files.map((n) => (JSON.parse(readFileSync(join(dir, n), 'utf8')) as { state: string }).state);
    expect(states.filter((s) => s === 'active')).toHaveLength(1);
    expect(states.filter((s) => s === 'next')).toHaveLength(0);
    expect(new Set(results.map((r) => r.active))).toEqual(new Set([true]));
  });

  it('never ends with two next keys when two CLI processes rotate at once', async () => {
    const database = await createTestDatabase(root);
    onTestFinished(() => database.drop());
    const env = { PATH: process.env.PATH, KEYS_DIR: dir, DATABASE_URL: database.url };
    await open();
    await promisify(execFile)(process.execPath, ['bin/tessera.js', 'migrate'], { cwd: ROOT, env });
    const runs = await Promise.all(
      [1, 2].map(() => promisify(execFile)(process.execPath, ['bin/tessera.js', 'keys', 'rotate', '--json'], { cwd: ROOT, env })),
    );
    const results = runs.map((r) => JSON.parse(r.stdout) as { kid: string; pending_rotation: boolean });
    expect(results[0]!.kid).toBe(results[1]!.kid);
    expect(results.map((r) => r.pending_rotation).sort()).toEqual([false, true]);
    const states = readdirSync(dir)
      .filter((n) => n.endsWith('.json'))
      .map((n) => (JSON.parse(readFileSync(join(dir, n), 'utf8')) as { state: string }).state);
    expect(states.sort()).toEqual(['active', 'next']);
  });

  it('keeps serving the last good keys when a file turns corrupt at runtime', async () => {
    const keys = await open();
    const kid = keys.current.active.kid;
    writeFileSync(join(dir, 'intruder.json'), 'not json', { mode: 0o600 });
    await expect(keys.tick()).rejects.toBeInstanceOf(KeystoreError);
    expect(keys.current.active.kid).toBe(kid);
  });
});
