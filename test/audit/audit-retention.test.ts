import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import type { AuditEventRow } from '../../src/audit/audit-event.table.js';
import { auditEventPages } from '../../src/audit/audit-export.js';
import { pruneAuditEvents, startAuditPruner } from '../../src/audit/audit-retention.js';
import { createLogger } from '../../src/log.js';
import { insertRows, rowsAt } from '../support/audit-rows.js';
import { startHarness, type Harness } from '../support/harness.js';

const DAY = 86_400_000;

let h: Harness;
let now: number;
beforeEach(async () => {
  h = await startHarness();
  // Only the rows each test writes (not the harness's key.created).
  await h.db.deleteFrom('audit_events').execute();
  h.clock.freeze();
  now = h.clock.now();
});
afterEach(() => h.close());

const types = async () => (await h.db.selectFrom('audit_events').select('type').execute()).map((r) => r.type).sort();
const details = (row: AuditEventRow) => JSON.parse(row.details!) as Record<string, unknown>;

describe('pruneAuditEvents', () => {
  it('deletes the rows older than the cutoff, batch after batch, keeps the rest, and records one audit.pruned row', async () => {
    const cutoff = now - 30 * DAY;
    // 23 old rows: four batches of 5 and a last one of 3; one row exactly at the cutoff stays.
    await insertRows(h.db, [
      ...rowsAt(Array.from({ length: 23 }, (_, i) => cutoff - 1 - i * 1000)),
      ...rowsAt([cutoff, cutoff + 1, now], 'test.new'),
    ]);
    const result = await pruneAuditEvents(h.db, h.service.auditLog, h.clock, { olderThanDays: 30, actor: 'test', batchSize: 5, pauseMs: 0 });
    expect(result).toEqual({ deleted: 23, cutoff });
    expect(await types()).toEqual(['audit.pruned', 'test.new', 'test.new', 'test.new']);
    const [pruned] = await h.auditRows('audit.pruned');
    expect(pruned).toMatchObject({ outcome: 'success', client_id: null });
    expect(details(pruned!)).toEqual({ actor: 'test', deleted: 23, cutoff: new Date(cutoff).toISOString(), older_than_days: 30 });
  });

  it('handles a number of rows that is an exact multiple of the batch', async () => {
    await insertRows(h.db, rowsAt(Array.from({ length: 10 }, (_, i) => now - 8 * DAY - i)));
    expect((await pruneAuditEvents(h.db, h.service.auditLog, h.clock, { olderThanDays: 7, actor: 'test', batchSize: 5, pauseMs: 0 })).deleted).toBe(10);
    expect(await types()).toEqual(['audit.pruned']);
  });

  it('records nothing when nothing was old enough, and refuses a retention under one day', async () => {
    await insertRows(h.db, rowsAt([now - DAY + 1], 'test.new'));
    expect((await pruneAuditEvents(h.db, h.service.auditLog, h.clock, { olderThanDays: 1, actor: 'test' })).deleted).toBe(0);
    expect(await types()).toEqual(['test.new']);
    await expect(pruneAuditEvents(h.db, h.service.auditLog, h.clock, { olderThanDays: 0, actor: 'test' })).rejects.toThrow(RangeError);
  });

  it('stops between batches when asked, and still accounts for what it deleted', async () => {
    await insertRows(h.db, rowsAt(Array.from({ length: 12 }, (_, i) => now - 8 * DAY - i)));
    const stop = new AbortController();
    const deleting = pruneAuditEvents(h.db, h.service.auditLog, h.clock, { olderThanDays: 7, actor: 'test', batchSize: 5, pauseMs: 50, signal: stop.signal });
    stop.abort();
    const { deleted } = await deleting;
    expect(deleted).toBe(5);
    const [pruned] = await h.auditRows('audit.pruned');
    expect(details(pruned!)).toMatchObject({ deleted: 5 });
    expect((await h.auditRows('test.old')).length).toBe(7);
  });
});

describe('startAuditPruner', () => {
  const silent = createLogger('silent');

  it('prunes once at start, as the scheduler', async () => {
    await insertRows(h.db, [...rowsAt(Array.from({ length: 7 }, (_, i) => now - 91 * DAY - i)), ...rowsAt([now - 89 * DAY], 'test.new')]);
    const stop = startAuditPruner(h.db, h.service.auditLog, h.clock, 90, silent, { batchSize: 3, pauseMs: 0 });
    try {
      await expect.poll(types, { timeout: 5000 }).toEqual(['audit.pruned', 'test.new']);
      expect(details((await h.auditRows('audit.pruned'))[0]!)).toMatchObject({ actor: 'scheduler', deleted: 7, older_than_days: 90 });
    } finally {
      await stop();
    }
  });

  it('stops after the batch in progress, and resolves once that run is accounted for', async () => {
    await insertRows(h.db, rowsAt(Array.from({ length: 7 }, (_, i) => now - 91 * DAY - i)));
    await startAuditPruner(h.db, h.service.auditLog, h.clock, 90, silent, { batchSize: 3, pauseMs: 1000 })();
    expect(details((await h.auditRows('audit.pruned'))[0]!)).toMatchObject({ actor: 'scheduler', deleted: 3 });
    expect((await h.auditRows('test.old')).length).toBe(4);
  });

  it('runs again every period', async () => {
    const stop = startAuditPruner(h.db, h.service.auditLog, h.clock, 1, silent, { everyMs: 20, pauseMs: 0 });
    try {
      await new Promise((resolve) => setTimeout(resolve, 50));
      await insertRows(h.db, rowsAt([now - 2 * DAY]));
      await expect.poll(async () => (await h.auditRows('test.old')).length, { timeout: 5000 }).toBe(0);
      await expect.poll(async () => (await h.auditRows('audit.pruned')).length, { timeout: 5000 }).toBe(1);
    } finally {
      await stop();
    }
  });

  it('does nothing with a retention of 0 (keep forever)', async () => {
    await insertRows(h.db, rowsAt([0, now - 10_000 * DAY]));
    await startAuditPruner(h.db, h.service.auditLog, h.clock, 0, silent)();
    expect(await types()).toEqual(['test.old', 'test.old']);
  });
});

describe('auditEventPages', () => {
  it('yields every row within [since, until) exactly once, ordered by time then id, across pages', async () => {
    const since = now - 1000;
    const until = now;
    // Many rows share each millisecond, so pages end in the middle of a run of equal times.
    const inside = rowsAt(Array.from({ length: 53 }, (_, i) => since + Math.floor(i / 4) * 7));
    await insertRows(h.db, [...inside, ...rowsAt([since - 1, until, until + 5], 'test.outside')]);
    const expected = [...inside].sort((a, b) => a.occurred_at - b.occurred_at || (a.id < b.id ? -1 : 1)).map((r) => r.id);

    const pages: AuditEventRow[][] = [];
    for await (const page of auditEventPages(h.db, { since, until, batchSize: 5 })) pages.push(page);
    expect(pages.every((page) => page.length <= 5)).toBe(true);
    expect(pages.flat().map((r) => r.id)).toEqual(expected);

    // Without an upper bound: up to the newest row.
    const all: string[] = [];
    for await (const page of auditEventPages(h.db, { since, batchSize: 4 })) all.push(...page.map((r) => r.type));
    expect(all).toHaveLength(53 + 2);
  });
});
