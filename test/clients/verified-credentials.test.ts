import { describe, expect, it } from 'vitest';

import { VerifiedCredentialCache } from '../../src/clients/verified-credentials.js';
import { TestClock } from '../support/harness.js';

const make = (ttlMs = 60_000, maxEntries = 100) => {
  const clock = new TestClock(0);
  return { clock, cache: new VerifiedCredentialCache({ ttlMs, maxEntries, clock }) };
};

describe('VerifiedCredentialCache', () => {
  it('knows a remembered secret for the same id and hash only', () => {
    const { cache } = make();
    cache.remember('s1', '$argon2id$h1', 'secret');
    expect(cache.has('s1', '$argon2id$h1', 'secret')).toBe(true);
    expect(cache.has('s1', '$argon2id$h1', 'secret2')).toBe(false);
    expect(cache.has('s1', '$argon2id$OTHER', 'secret')).toBe(false);
    expect(cache.has('s2', '$argon2id$h1', 'secret')).toBe(false);
  });

  it('forgets an entry whose hash changed (the secret was re-hashed or replaced)', () => {
    const { cache } = make();
    cache.remember('s1', 'h1', 'secret');
    expect(cache.has('s1', 'h2', 'secret')).toBe(false);
    expect(cache.has('s1', 'h1', 'secret')).toBe(false);
  });

  it('expires entries after the TTL', () => {
    const { cache, clock } = make(1000);
    cache.remember('s1', 'h1', 'secret');
    clock.advance(0.999);
    expect(cache.has('s1', 'h1', 'secret')).toBe(true);
    clock.advance(0.001);
    expect(cache.has('s1', 'h1', 'secret')).toBe(false);
  });

  it('stays within its bound, dropping the least recently used', () => {
    const { cache } = make(60_000, 2);
    cache.remember('a', 'h', 'x');
    cache.remember('b', 'h', 'x');
    expect(cache.has('a', 'h', 'x')).toBe(true);
    cache.remember('c', 'h', 'x');
    expect(cache.size).toBe(2);
    expect(cache.has('b', 'h', 'x')).toBe(false);
    expect(cache.has('a', 'h', 'x')).toBe(true);
    expect(cache.has('c', 'h', 'x')).toBe(true);
  });

  it('is off with a TTL of 0', () => {
    const { cache } = make(0);
    cache.remember('s1', 'h1', 'secret');
    expect(cache.has('s1', 'h1', 'secret')).toBe(false);
  });
});
