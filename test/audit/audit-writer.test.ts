import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { auditEvent, newEventId } from '../../src/audit/audit-log.js';
import type * as AuditWriterModule from '../../src/audit/audit-writer.js';
import { openDatabase, type Db } from '../../src/db/database.js';
import { migrateToLatest } from '../../src/db/migrate.js';
import { clientRow } from '../support/database.js';

// The thread runs compiled code (dist/, built by the global setup), as it does in the server.
const { AuditWriterThread } = (await import(new URL('../../dist/src/audit/audit-writer.js', import.meta.url).href)) as typeof AuditWriterModule;

const row = (type: string) => ({ id: newEventId(Date.now()), occurred_at: Date.now(), ...auditEvent({ type, outcome: 'success' }) });

describe('audit writer thread', () => {
  let dir: string;
  let db: Db;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tessera-audit-writer-'));
    db = openDatabase(join(dir, 'tessera.db'));
    await migrateToLatest(db);
  });
  afterAll(async () => {
    await db.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  const types = async () => (await db.selectFrom('audit_events').select('type').orderBy('id').execute()).map((r) => r.type);

  it('commits batches in order, each resolved once it can be read from another connection', async () => {
    const thread = new AuditWriterThread(join(dir, 'tessera.db'));
    const first = thread.write([row('a.1'), row('a.2')]);
    const second = thread.write([row('a.3')]);
    await first;
    expect((await types()).filter((t) => t.startsWith('a.'))).toEqual(expect.arrayContaining(['a.1', 'a.2']));
    await second;
    expect((await types()).filter((t) => t.startsWith('a.'))).toEqual(['a.1', 'a.2', 'a.3']);
    await thread.close();
  });

  it('rejects a batch it could not commit, writing none of it, and goes on with the next', async () => {
    const thread = new AuditWriterThread(join(dir, 'tessera.db'));
    const duplicate = row('b.dup');
    await thread.write([duplicate]);
    await expect(thread.write([row('b.lost'), duplicate])).rejects.toThrow(/audit batch not committed/);
    await thread.write([row('b.next')]);
    expect((await types()).filter((t) => t.startsWith('b.'))).toEqual(['b.dup', 'b.next']);
    await thread.close();
  });

  it("writes when secrets were last used, off the event loop's connection", async () => {
    await db.insertInto('clients').values(clientRow('used')).execute();
    await db.insertInto('client_secrets').values(['s1', 's2'].map((id) => ({ id, client_id: 'used', hash: 'h', created_at: 1, expires_at: null, last_used_at: null }))).execute();
    const thread = new AuditWriterThread(join(dir, 'tessera.db'));
    await thread.writeLastUse([['s1', 100], ['s2', 200]]);
    expect(await db.selectFrom('client_secrets').select(['id', 'last_used_at']).orderBy('id').execute()).toEqual([
      { id: 's1', last_used_at: 100 },
      { id: 's2', last_used_at: 200 },
    ]);
    await thread.close();
  });

  it('rejects the waiting batches when the thread cannot open the database, instead of hanging', async () => {
    const thread = new AuditWriterThread(dir); // a directory, not a database file
    await expect(thread.write([row('c.1')])).rejects.toThrow();
    await thread.close();
  });
});
