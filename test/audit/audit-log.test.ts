import { describe, expect, it } from 'vitest';

import { newEventId, scrub } from '../../src/audit/audit-log.js';

describe('newEventId', () => {
  it('sorts by time, then by order of recording within one millisecond', () => {
    const ids = [newEventId(5_000), newEventId(5_000), newEventId(5_000), newEventId(4_000), newEventId(6_000)];
    expect([...ids].sort()).toEqual(ids);
    expect(new Set(ids).size).toBe(ids.length);
  });
});

describe('scrub', () => {
  it.each([
    ['tsec_0123456789abcdef_AbC-_xyz', 'tsec_[redacted]'],
    ['id=tsec_0123456789abcdef_AbC', 'id=tsec_[redacted]'],
    ['eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln', '[jwt redacted]'],
    ['line\nbreak\u0000', 'line\uFFFDbreak\uFFFD'],
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
});
