/**
 * Lock-outs announced between instances (limits/index.ts): anyone who can connect can announce, so
 * announcements are checked against the shared count, and a flood of them must not take this
 * instance's database pool.
 */
import { createHash } from 'node:crypto';

import type { KyselyPlugin } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { AuditLog } from '../../src/audit/audit-log.js';
import { writeAuditRows } from '../../src/audit/audit-writer.js';
import { loadConfig } from '../../src/config.js';
import { openDatabase, type Db } from '../../src/db/database.js';
import { migrateToLatest } from '../../src/db/migrate.js';
import { serverLimits, type Limits } from '../../src/limits/index.js';
import { SharedLimitState } from '../../src/limits/shared.js';
import { createLogger } from '../../src/log.js';
import { createTestDatabase, migratedDatabase, type TestDatabase } from '../support/database.js';
import { TestClock } from '../support/harness.js';

const digest = (value: string) => createHash('sha256').update(value).digest('base64url');

describe('announced lock-outs', () => {
  let database: TestDatabase;
  let db: Db;
  let limits: Limits;
  /** Reads of limit_failures: how many ran, and the most at once. */
  const reads = { started: 0, running: 0, most: 0 };

  beforeAll(async () => {
    database = await createTestDatabase('');
    const counting: KyselyPlugin = {
      // Every query here is a read of limit_failures but the test's own insert.
      transformQuery: (args) => {
        if (args.node.kind === 'SelectQueryNode') reads.started += 1;
        reads.running += 1;
        reads.most = Math.max(reads.most, reads.running);
        return args.node;
      },
      transformResult: (args) => {
        reads.running -= 1;
        return Promise.resolve(args.result);
      },
    };
    db = openDatabase(database.url).withPlugin(counting);
    await migrateToLatest(db);
    const clock = new TestClock();
    const log = createLogger('silent');
    const config = loadConfig({ ISSUER: 'http://127.0.0.1:3000', DATABASE_URL: database.url, AUTH_FAILURES_PER_ADDRESS: '3', AUTH_FAILURES_PER_CLIENT: '3' });
    limits = serverLimits(config, db, clock, new AuditLog(writeAuditRows(db), log, clock), log);
  });
  afterAll(async () => {
    await db.destroy();
    await database.drop();
  });

  const announce = (payload: unknown) => limits.handlers().tessera_limit_locked!(JSON.stringify(payload));
  const settled = async () => {
    for (let quiet = 0; quiet < 5; ) {
      const before = reads.started;
      await new Promise((resolve) => setTimeout(resolve, 50));
      quiet = reads.started === before && reads.running === 0 ? quiet + 1 : 0;
    }
  };

  it('locks a key only as far as its shared count says', async () => {
    const address = '203.0.113.9';
    // Four failures counted by other instances: past AUTH_FAILURES_PER_ADDRESS (3).
    await db.insertInto('limit_failures').values({ key: `address:${digest(address)}`, failures: 4, last_failure_ms: Date.now() }).execute();
    announce({ kind: 'address', key: digest('198.51.100.1'), until: Date.now() + 3_600_000 });
    announce({ kind: 'address', key: digest(address) });
    await settled();
    expect(limits.addressWait('198.51.100.1')).toBe(0);
    expect(limits.addressWait(address)).toBeGreaterThan(0);
  });

  it('applies a client_id announcement to the client_id back-off, not the address one', async () => {
    const [clientId, address] = ['announced-client', '192.0.2.44'];
    // The client_id back-off counts a client_id from one address.
    const key = digest(JSON.stringify([clientId, address]));
    await db.insertInto('limit_failures').values({ key: `client:${key}`, failures: 4, last_failure_ms: Date.now() }).execute();
    announce({ kind: 'client', key });
    await settled();
    expect(limits.clientWait(clientId, address)).toBeGreaterThan(0);
    expect(limits.clientWait(clientId, '192.0.2.45')).toBe(0);
    expect(limits.addressWait(address)).toBe(0);
  });

  it('reads a flood of announcements in batches, one read at a time', async () => {
    reads.started = 0;
    reads.most = 0;
    for (let i = 0; i < 2000; i += 1) announce({ kind: 'client', key: digest(`flood-${i}`) });
    await settled();
    expect(reads.started).toBe(4); // 500 keys a read
    expect(reads.most).toBe(1);
  });

  it('ignores what is not a lock-out, a key that is no digest included', () => {
    expect(() => announce({ kind: 'client', key: 'x'.repeat(8000) })).toThrow('not a lock-out');
    expect(() => announce({ kind: 'nope', key: digest('x') })).toThrow('not a lock-out');
  });
});

describe('the shared failure count', () => {
  const fixture = migratedDatabase();

  it('counts in a fixed window, as each instance does in memory', async () => {
    const state = new SharedLimitState(fixture.db);
    const windowMs = 60_000;
    // Every 40 s: a window that slid with each failure would count them all.
    const counts = [];
    for (let i = 0; i < 5; i += 1) counts.push(await state.failed('address:trickle', i * 40_000, windowMs));
    expect(counts).toEqual([1, 2, 1, 2, 1]);
    expect(await state.failures(['address:trickle'], 4 * 40_000, windowMs)).toEqual(new Map([['address:trickle', 1]]));
  });
});
