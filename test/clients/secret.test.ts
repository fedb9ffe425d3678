import { describe, expect, it } from 'vitest';

import { SecretHasher, generateSecret, secretIdOf } from '../../src/clients/secret.js';

describe('client secrets', () => {
  it('are prefixed for secret scanners, carry their public id and 256 random bits', () => {
    const { id, value } = generateSecret();
    expect(value).toMatch(/^tsec_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/);
    expect(secretIdOf(value)).toBe(id);
    expect(generateSecret().value).not.toBe(value);
  });

  it.each(['', 'hunter2', 'tsec_XYZ_abc', `tsec_0123456789abcdef_${'a'.repeat(42)}`])('has no id in a foreign value %j', (value) => {
    expect(secretIdOf(value)).toBeUndefined();
  });

  it('hashes with argon2id and the configured parameters, never storing the plaintext', async () => {
    const hasher = new SecretHasher({ memoryCost: 19_456, timeCost: 2, parallelism: 1 }, { concurrency: 1, queue: 8 });
    const { value } = generateSecret();
    const hash = await hasher.hash(value);
    expect(hash).toMatch(/^\$argon2id\$v=19\$m=19456,p=1,t=2\$/);
    expect(hash).not.toContain(value);
    expect(await hasher.verify(hash, value)).toBe(true);
    expect(await hasher.verify(hash, `${value}x`)).toBe(false);
    expect(await hasher.verify('not-a-hash', value)).toBe(false);
    expect(await hasher.verifyDecoy(value)).toBe(false);
  });

  it('asks for a re-hash only of hashes weaker than the configured parameters', async () => {
    const params = { memoryCost: 19_456, timeCost: 2, parallelism: 1 };
    const limits = { concurrency: 1, queue: 8 };
    const hasher = new SecretHasher(params, limits);
    const hashWith = (other: Partial<typeof params>) => new SecretHasher({ ...params, ...other }, limits).hash('s');
    expect(hasher.needsRehash(await hashWith({}))).toBe(false);
    expect(hasher.needsRehash(await hashWith({ memoryCost: 12_288 }))).toBe(true);
    expect(hasher.needsRehash(await hashWith({ timeCost: 1 }))).toBe(true);
    // Stronger, or only other lanes: what an instance on newer settings wrote is kept, not downgraded.
    expect(hasher.needsRehash(await hashWith({ memoryCost: 47_104 }))).toBe(false);
    expect(hasher.needsRehash(await hashWith({ timeCost: 3 }))).toBe(false);
    expect(hasher.needsRehash(await hashWith({ parallelism: 2 }))).toBe(false);
    // More memory for fewer passes (OWASP's m=46 MiB, t=1): another trade-off, not a weaker hash, so
    // two instances set one way and the other keep each other's hashes instead of re-hashing back and forth.
    const other = new SecretHasher({ memoryCost: 47_104, timeCost: 1, parallelism: 1 }, limits);
    expect(hasher.needsRehash(await other.hash('s'))).toBe(false);
    expect(other.needsRehash(await hasher.hash('s'))).toBe(false);
    expect(hasher.needsRehash('$argon2id$v=19$m=abc,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA')).toBe(true);
    expect(hasher.needsRehash('$argon2i$v=19$m=65536,t=3,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA')).toBe(true);
    expect(hasher.needsRehash('$argon2id$v=16$m=65536,t=3,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA')).toBe(true);
  });
});
