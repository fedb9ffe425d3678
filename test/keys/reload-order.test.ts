/**
 * Reloads of the key directory that overlap (a scheduled tick's and an operator's): the one that
 * began later read the newer directory, and an earlier one finishing after it must not undo it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterEach, expect, it, vi } from 'vitest';

import type * as KeyFileModule from '../../src/keys/key-file.js';
import { KeyManager } from '../../src/keys/key-manager.js';
import { TestClock } from '../support/harness.js';

/** While held, each key file read waits for `release` before it returns what it read. */
const gate = vi.hoisted(() => {
  const state = { held: false, release: () => {}, released: Promise.resolve(), reading: () => {}, read: Promise.resolve() };
  return {
    state,
    hold() {
      state.held = true;
      state.released = new Promise<void>((resolve) => (state.release = resolve));
      state.read = new Promise<void>((resolve) => (state.reading = resolve));
    },
  };
});
vi.mock('../../src/keys/key-file.js', async (importOriginal) => {
  const actual = await importOriginal<typeof KeyFileModule>();
  return {
    ...actual,
    readKeyFile: async (path: string) => {
      if (!gate.state.held) return actual.readKeyFile(path);
      const file = await actual.readKeyFile(path);
      gate.state.reading();
      await gate.state.released;
      return file;
    },
  };
});

const root = mkdtempSync(join(tmpdir(), 'tessera-reload-'));
afterEach(() => rmSync(root, { recursive: true, force: true }));

it('keeps the snapshot of the reload that began last, whichever finishes last', async () => {
  const keys = await KeyManager.open(
    { dir: join(root, 'keys'), modulusLength: 2048, rotationDays: 0, clock: new TestClock(1_800_000_000_000), jwksMaxAge: 300, reloadInterval: 5, retention: 3600 },
    () => Promise.resolve(),
  );
  const compromised = keys.current.active.kid;
  // A scheduled reload reads the directory as it is, then is held up before it applies what it read.
  gate.hold();
  const slow = keys.reload();
  await gate.state.read;
  gate.state.held = false;
  // Meanwhile an operator revokes the key; revoke() reloads and answers.
  await keys.revoke(compromised, 'test');
  expect(keys.current.verificationKey(compromised)).toBeUndefined();
  gate.state.release();
  await slow;
  expect(keys.current.verificationKey(compromised)).toBeUndefined();
  expect(keys.current.active.kid).not.toBe(compromised);
});
