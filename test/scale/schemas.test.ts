/**
 * Several installations in one PostgreSQL database, each in its own schema: a change an operator
 * makes by hand must move the change counter of the installation whose table it writes, whatever
 * the operator's search_path, or that installation's servers would keep the old record.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { clientsVersion } from '../../src/clients/client.repository.js';
import { openDatabase, type Db } from '../../src/db/database.js';
import { migrateToLatest } from '../../src/db/migrate.js';
import { clientRow, createTestDatabase, type TestDatabase } from '../support/database.js';

describe('installations in several schemas of one database', () => {
  let a: TestDatabase;
  let b: TestDatabase;
  let dbA: Db;
  let dbB: Db;
  const schemaOf = (database: TestDatabase) => /search_path=(\w+)/.exec(decodeURIComponent(database.url))![1]!;

  beforeAll(async () => {
    [a, b] = await Promise.all([createTestDatabase(''), createTestDatabase('')]);
    [dbA, dbB] = [openDatabase(a.url), openDatabase(b.url)];
    await migrateToLatest(dbA);
    await migrateToLatest(dbB);
    await dbA.insertInto('clients').values(clientRow('c')).execute();
  });
  afterAll(async () => {
    await Promise.all([dbA.destroy(), dbB.destroy()]);
    await Promise.all([a.drop(), b.drop()]);
  });

  /** An operator's session: `search_path` as given, writing schema A's table by its full name. */
  async function disableByHand(searchPath: string): Promise<void> {
    const client = new pg.Client({ connectionString: process.env.TEST_DATABASE_URL });
    await client.connect();
    try {
      await client.query(`set search_path = ${searchPath}`);
      await client.query(`update ${schemaOf(a)}.clients set enabled = 0 where client_id = 'c'`);
    } finally {
      await client.end();
    }
  }

  it("moves the written installation's counter, not the one on the writer's path", async () => {
    const [beforeA, beforeB] = [await clientsVersion(dbA), await clientsVersion(dbB)];
    await disableByHand(schemaOf(b));
    expect(await clientsVersion(dbA)).toBe(beforeA + 1);
    expect(await clientsVersion(dbB)).toBe(beforeB);
  });

  it('lets a writer with no installation on its path change the table', async () => {
    const before = await clientsVersion(dbA);
    await disableByHand('pg_catalog');
    expect(await clientsVersion(dbA)).toBe(before + 1);
  });
});
