import { chmodSync, closeSync, mkdtempSync, openSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { sql } from 'kysely';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { openDatabase } from '../../src/db/database.js';
import { migrateToLatest } from '../../src/db/migrate.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'tessera-db-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('openDatabase', () => {
  it('creates the file and its WAL owner-only, in WAL mode with durable commits', async () => {
    const path = join(dir, 'nested', 'tessera.db');
    const db = openDatabase(path);
    await migrateToLatest(db);
    const pragma = async (name: string) => (await sql.raw(`PRAGMA ${name}`).execute(db)).rows[0];
    expect(await pragma('journal_mode')).toEqual({ journal_mode: 'wal' });
    expect(await pragma('synchronous')).toEqual({ synchronous: 2 });
    expect(await pragma('foreign_keys')).toEqual({ foreign_keys: 1 });
    expect(statSync(join(dir, 'nested')).mode & 0o777).toBe(0o700);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(statSync(`${path}-wal`).mode & 0o777).toBe(0o600);
    await db.destroy();
  });


  it('makes a database file made before owner-only, with its WAL', async () => {
    const path = join(dir, 'tessera.db');
    const first = openDatabase(path);
    await migrateToLatest(first);
    await first.destroy();
    for (const file of [path, `${path}-wal`]) {
      closeSync(openSync(file, 'a'));
      chmodSync(file, 0o644);
    }
    const db = openDatabase(path);
    try {
      expect(statSync(path).mode & 0o777).toBe(0o600);
      expect(statSync(`${path}-wal`).mode & 0o777).toBe(0o600);
    } finally {
      await db.destroy();
    }
  });

  it('answers correctly across more distinct queries than it keeps prepared', async () => {
    const db = openDatabase(join(dir, 'tessera.db'));
    await migrateToLatest(db);
    await db.insertInto('revoked_tokens').values([1, 2, 3].map((n) => ({ jti: `jti-${n}`, client_id: 'c', expires_at: n, revoked_at: n }))).execute();
    // An IN list of n values is a distinct SQL text for every n.
    const count = async (n: number) => {
      const jtis = Array.from({ length: n }, (_, i) => `jti-${i + 1}`);
      return (await db.selectFrom('revoked_tokens').select('jti').where('jti', 'in', jtis).execute()).length;
    };
    for (let n = 1; n <= 300; n++) expect(await count(n)).toBe(Math.min(n, 3));
    expect(await count(2)).toBe(2);
    await db.destroy();
  });
});
