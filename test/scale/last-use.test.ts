/**
 * The token path's writes to client rows on PostgreSQL (clients/last-use.ts, a secret's re-hash):
 * they wait their turn for the write lock like every other write, since the row locks they would
 * otherwise take, in their own order, deadlock against a rotation or another instance's batch.
 */
import { sql } from 'kysely';
import { beforeAll, describe, expect, it } from 'vitest';

import { expireSecretsAfter, updateSecretHash, validSecretIds } from '../../src/clients/client.repository.js';
import { writeLastUse } from '../../src/clients/last-use.js';
import { clientRow, migratedDatabase } from '../support/database.js';

describe('writes to client rows from the token path, on PostgreSQL', () => {
  const fixture = migratedDatabase();
  const db = () => fixture.db;
  const secret = (id: string, client = 'c') => ({ id, client_id: client, hash: 'h', created_at: 1, expires_at: null, last_used_at: null });

  /** Resolves once a session of this database waits for a lock. */
  const someoneWaits = async () => {
    for (;;) {
      const { rows } = await sql<{ n: number }>`select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'`.execute(db());
      if (rows[0]!.n > 0) return;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  };

  beforeAll(async () => {
    await db().insertInto('clients').values([clientRow('c'), clientRow('r')]).execute();
    await db().insertInto('client_secrets').values(Array.from({ length: 600 }, (_, i) => secret(`s${i}`))).execute();
  });

  it('last use waits for an admin write holding the lock, then is written, in batches of any size', async () => {
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let entered!: () => void;
    const inside = new Promise<void>((resolve) => (entered = resolve));
    const holding = db().transaction().execute(async () => {
      entered();
      await released;
    });
    await inside;
    let written = false;
    const writing = writeLastUse(db())(Array.from({ length: 600 }, (_, i) => [`s${i}`, 1000 + i] as const)).then(() => (written = true));
    await someoneWaits();
    expect(written).toBe(false);
    release();
    await holding;
    await writing;
    const rows = await db().selectFrom('client_secrets').select(['id', 'last_used_at']).where('client_id', '=', 'c').execute();
    expect(rows.filter((r) => r.last_used_at === 1000 + Number(r.id.slice(1)))).toHaveLength(600);
  });

  it('neither last use nor a re-hash deadlocks against a secret rotation', async () => {
    const now = 1_000_000;
    const writes: [string, () => Promise<unknown>][] = [
      ['last use', () => writeLastUse(db())([['current', now], ['older', now]])],
      ['re-hash', () => updateSecretHash(db(), 'current', 'rehashed')],
    ];
    for (const [name, write] of writes) {
      await db().deleteFrom('client_secrets').where('client_id', '=', 'r').execute();
      // Mid-rotation: an older secret still valid for a while, and the current one.
      await db().insertInto('client_secrets').values([{ ...secret('older', 'r'), expires_at: now + 500 }, { ...secret('current', 'r'), created_at: 2 }]).execute();
      let side: Promise<string> | undefined;
      const rotation = db()
        .transaction()
        .execute(async (trx) => {
          // rotateSecret's statements, in its order, with the token path's write arriving between them.
          const [previous] = await validSecretIds(trx, 'r', now);
          await expireSecretsAfter(trx, 'r', now, previous);
          side = write().then(
            () => 'ok',
            (err: { code?: string }) => `failed ${err.code ?? ''}`,
          );
          await someoneWaits();
          await expireSecretsAfter(trx, 'r', now + 86_400);
          return 'ok';
        })
        .catch((err: { code?: string }) => `failed ${err.code ?? ''}`);
      expect({ name, rotation: await rotation, side: await side }).toEqual({ name, rotation: 'ok', side: 'ok' });
    }
  });
});
