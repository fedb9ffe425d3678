import { sql } from 'kysely';
import { describe, expect, it, vi } from 'vitest';

import { AuditLog, auditEvent, newEventId, scrub } from '../../src/audit/audit-log.js';
import { writeAuditRows } from '../../src/audit/audit-writer.js';
import { createLogger } from '../../src/log.js';
import { startHarness } from '../support/harness.js';

describe('newEventId', () => {
  it('sorts by time, then by order of recording within one millisecond', () => {
    const ids = [newEventId(5_000), newEventId(5_000), newEventId(5_000), newEventId(4_000), newEventId(6_000)];
    expect([...ids].sort()).toEqual(ids);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('stays unique and ordered when the clock steps back for longer than one millisecond\'s sequence', () => {
    const ids = [newEventId(10_000)];
    for (let i = 0; i < 70_000; i += 1) ids.push(newEventId(9_000));
    ids.push(newEventId(10_002));
    expect(new Set(ids).size).toBe(ids.length);
    expect([...ids].sort()).toEqual(ids);
  });
});

describe('scrub', () => {
  it.each([
    ['tsec_0123456789abcdef_AbC-_xyz', 'tsec_[redacted]'],
    ['id=tsec_0123456789abcdef_AbC', 'id=tsec_[redacted]'],
    ['eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln', '[jwt redacted]'],
    ['line\nbreak\u0000', 'line\uFFFDbreak\uFFFD'],
    ['ops-bot\u202e\u2028\u009b31mtoor\u200b', 'ops-bot\uFFFD\uFFFD\uFFFD31mtoor\uFFFD'],
    ['half\ud83d pair \ude00 whole \ud83d\ude00', 'half\uFFFD pair \uFFFD whole \ud83d\ude00'],
    ['', null],
    [42, null],
  ])('makes %j safe to record', (input, expected) => {
    expect(scrub(input)).toBe(expected);
  });

  it('bounds the length after masking, so a cut never exposes part of a secret', () => {
    const value = `${'a'.repeat(250)}tsec_0123456789abcdef_${'S'.repeat(43)}`;
    expect(scrub(value)).toBe(`${'a'.repeat(250)}tsec_[`);
    expect(scrub('x'.repeat(1000))).toHaveLength(256);
  });

  it('never cuts a character in half', () => {
    expect(scrub(`${'a'.repeat(255)}\u{1F600}`)).toBe('a'.repeat(255));
    expect(scrub(`${'a'.repeat(254)}\u{1F600}`)).toBe(`${'a'.repeat(254)}\u{1F600}`);
  });
});

describe('AuditLog group commit', () => {
  it('commits rows recorded together in fewer transactions, each caller waiting for its own row', async () => {
    const h = await startHarness();
    try {
      const spy = vi.spyOn(h.db, 'insertInto');
      const log = new AuditLog(writeAuditRows(h.db), createLogger('silent'), h.clock);
      await Promise.all(Array.from({ length: 50 }, (_, i) => log.record(auditEvent({ type: `test.${i}`, outcome: 'success' }))));
      expect((await h.auditRows('test.')).length).toBe(50);
      expect(spy.mock.calls.length).toBeLessThan(5);
    } finally {
      await h.close();
    }
  });

  it('rejects every caller of a batch that could not be committed', async () => {
    const h = await startHarness();
    try {
      const log = new AuditLog(writeAuditRows(h.db), createLogger('silent'), h.clock);
      await sql`DROP TABLE audit_events`.execute(h.db);
      const results = await Promise.allSettled([1, 2, 3].map(() => log.record(auditEvent({ type: 'test', outcome: 'success' }))));
      expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected', 'rejected']);
      await log.flush();
      expect(log.pending).toBe(0);
    } finally {
      await h.close();
    }
  });
});
