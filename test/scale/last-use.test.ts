/**
 * Secrets' last use on PostgreSQL (clients/last-use.ts): written in single statements, outside the
 * transactions whose write lock every instance's admin writes share.
 */
import { beforeAll, describe, expect, it } from 'vitest';

import { writeLastUse } from '../../src/clients/last-use.js';
import { clientRow, migratedDatabase } from '../support/database.js';

describe('last use on PostgreSQL', () => {
  const fixture = migratedDatabase();
  const db = () => fixture.db;

  beforeAll(async () => {
    await db().insertInto('clients').values(clientRow('c')).execute();
    await db().insertInto('client_secrets').values(Array.from({ length: 600 }, (_, i) => ({ id: `s${i}`, client_id: 'c', hash: 'h', created_at: 1, expires_at: null, last_used_at: null }))).execute();
  });

  it('is written while an admin write holds the write lock, in batches of any size', async () => {
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let entered!: () => void;
    const inside = new Promise<void>((resolve) => (entered = resolve));
    const holding = db().transaction().execute(async () => {
      entered();
      await released;
    });
    await inside;
    try {
      await writeLastUse(db())(Array.from({ length: 600 }, (_, i) => [`s${i}`, 1000 + i] as const));
    } finally {
      release();
      await holding;
    }
    const rows = await db().selectFrom('client_secrets').select(['id', 'last_used_at']).execute();
    expect(rows.filter((r) => r.last_used_at === 1000 + Number(r.id.slice(1)))).toHaveLength(600);
  });
});
