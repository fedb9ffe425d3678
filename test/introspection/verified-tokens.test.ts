import { generateKeyPairSync, type KeyObject } from 'node:crypto';

import fc from 'fast-check';
import { SignJWT, type JWTPayload } from 'jose';
import { afterEach, describe, expect, it, vi } from 'vitest';

import type { Keystore } from '../../src/keys/keystore.js';
import { createTokenVerifier, type Verification } from '../../src/introspection/verify-token.js';

const ISSUER = 'https://issuer.example';
const LEEWAY = 10;
const MAX_AGE = 3600;
const T0 = 1_800_000_000;

const pair = () => generateKeyPairSync('rsa', { modulusLength: 2048 });
const keyA = pair();
const keyB = pair();

/** Stands in for the keystore: kids map to public keys, and a kid can be withdrawn (revoked). */
function keyring() {
  const known = new Map<string, KeyObject>([
    ['a', keyA.publicKey],
    ['b', keyB.publicKey],
  ]);
  const keys = { current: { verificationKey: (kid: string) => known.get(kid) } as unknown as Keystore };
  return { keys, revoke: (kid: string) => known.delete(kid) };
}

function verifierAt(cacheSize: number, keys: { current: Keystore }) {
  const clock = { seconds: T0, now: () => clock.seconds * 1000 };
  return { clock, verify: createTokenVerifier({ keys, issuer: ISSUER, clock, leeway: LEEWAY, maxTokenAge: MAX_AGE, cacheSize }) };
}

function mint(claims: JWTPayload & { iat: number; exp: number }, kid = 'a', key = keyA.privateKey): Promise<string> {
  const { iat, exp, ...rest } = claims;
  return new SignJWT({ sub: 'c1', client_id: 'c1', aud: 'https://api.example.com', jti: `j-${iat}-${exp}`, iss: ISSUER, ...rest })
    .setProtectedHeader({ alg: 'RS256', typ: 'at+jwt', kid })
    .setIssuedAt(iat)
    .setExpirationTime(exp)
    .sign(key);
}

/** The same header and signature over another payload. */
function tampered(token: string): string {
  const [header, , signature] = token.split('.');
  const payload = Buffer.from(JSON.stringify({ sub: 'c2', client_id: 'c2', aud: 'https://api.example.com', jti: 'x', iss: ISSUER, iat: T0, exp: T0 + 600 })).toString('base64url');
  return `${header}.${payload}.${signature}`;
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe('remembered verifications (introspection)', () => {
  it('checks a signature once for a token introspected again, and the same claims come back', async () => {
    const spy = vi.spyOn(globalThis.crypto.subtle, 'verify');
    const { verify } = verifierAt(100, keyring().keys);
    const token = await mint({ iat: T0, exp: T0 + 600 });
    const first = await verify(token);
    expect(first.ok).toBe(true);
    expect(spy).toHaveBeenCalledTimes(1);
    expect(await verify(token)).toEqual(first);
    expect(await verify(token)).toEqual(first);
    expect(spy).toHaveBeenCalledTimes(1);
  });

  it('with size 0 checks every time', async () => {
    const spy = vi.spyOn(globalThis.crypto.subtle, 'verify');
    const { verify } = verifierAt(0, keyring().keys);
    const token = await mint({ iat: T0, exp: T0 + 600 });
    await verify(token);
    await verify(token);
    expect(spy).toHaveBeenCalledTimes(2);
  });

  it('takes a token in one spelling only: padding or whitespace in a part is malformed, not a second entry', async () => {
    const { verify } = verifierAt(100, keyring().keys);
    const token = await mint({ iat: T0, exp: T0 + 600 });
    expect((await verify(token)).ok).toBe(true);
    // jose's decoder would accept each of these as the same token.
    for (const variant of [`${token}==`, `${token} `, `${token}\t`, `${token.slice(0, 40)}\n${token.slice(40)}`, ` ${token}`]) {
      expect(await verify(variant)).toEqual({ ok: false, reason: 'malformed' });
    }
  });

  it('does not remember a token whose signature holds but whose claims have the wrong types', async () => {
    const spy = vi.spyOn(globalThis.crypto.subtle, 'verify');
    const { verify } = verifierAt(100, keyring().keys);
    const token = await mint({ iat: T0, exp: T0 + 600, scope: 5 });
    expect(await verify(token)).toEqual({ ok: false, reason: 'invalid_claims' });
    expect(await verify(token)).toEqual({ ok: false, reason: 'invalid_claims' });
    expect(spy).toHaveBeenCalledTimes(2);
  });

  it('hands out claims no caller can change for the next one', async () => {
    const { verify } = verifierAt(100, keyring().keys);
    const token = await mint({ iat: T0, exp: T0 + 600 });
    const first = await verify(token);
    expect(first.ok && Object.isFrozen(first.claims)).toBe(true);
  });

  it('serves nothing to a token that only shares a signature with a remembered one', async () => {
    const { verify } = verifierAt(100, keyring().keys);
    const token = await mint({ iat: T0, exp: T0 + 600 });
    expect((await verify(token)).ok).toBe(true);
    expect(await verify(tampered(token))).toEqual({ ok: false, reason: 'bad_signature' });
  });

  it('stops at exp plus the leeway, exactly where jose does', async () => {
    const spy = vi.spyOn(globalThis.crypto.subtle, 'verify');
    const { clock, verify } = verifierAt(100, keyring().keys);
    const token = await mint({ iat: T0, exp: T0 + 60 });
    expect((await verify(token)).ok).toBe(true);
    clock.seconds = T0 + 60 + LEEWAY - 1;
    expect((await verify(token)).ok).toBe(true);
    // Still remembered in its last second.
    expect(spy).toHaveBeenCalledTimes(1);
    clock.seconds = T0 + 60 + LEEWAY;
    expect(await verify(token)).toEqual({ ok: false, reason: 'expired' });
  });

  it('stops once the token is older than the maximum token age plus the leeway, exactly where jose does', async () => {
    const { clock, verify } = verifierAt(100, keyring().keys);
    // Its exp is far off: only the age rule ends it.
    const token = await mint({ iat: T0 - MAX_AGE, exp: T0 + MAX_AGE });
    const spy = vi.spyOn(globalThis.crypto.subtle, 'verify');
    expect((await verify(token)).ok).toBe(true);
    clock.seconds = T0 + LEEWAY;
    expect((await verify(token)).ok).toBe(true);
    expect(spy).toHaveBeenCalledTimes(1);
    clock.seconds = T0 + LEEWAY + 1;
    expect(await verify(token)).toEqual({ ok: false, reason: 'expired' });
  });

  it("forgets a token once its key is withdrawn: a revoked key's tokens are unknown_kid", async () => {
    const ring = keyring();
    const { verify } = verifierAt(100, ring.keys);
    const token = await mint({ iat: T0, exp: T0 + 600 }, 'b', keyB.privateKey);
    expect((await verify(token)).ok).toBe(true);
    ring.revoke('b');
    expect(await verify(token)).toEqual({ ok: false, reason: 'unknown_kid' });
  });

  it('verifies again when the clock went back past the verification (an iat now in the future fails)', async () => {
    const { clock, verify } = verifierAt(100, keyring().keys);
    const token = await mint({ iat: T0, exp: T0 + 600 });
    expect((await verify(token)).ok).toBe(true);
    clock.seconds = T0 - LEEWAY - 1;
    expect(await verify(token)).toEqual({ ok: false, reason: 'invalid_claims' });
  });

  it('keeps at most its size, the least recently used going first', async () => {
    const spy = vi.spyOn(globalThis.crypto.subtle, 'verify');
    const { verify } = verifierAt(2, keyring().keys);
    const [a, b, c] = await Promise.all([1, 2, 3].map((i) => mint({ iat: T0 - i, exp: T0 + 600 })));
    for (const token of [a!, b!, a!, c!]) await verify(token);
    expect(spy).toHaveBeenCalledTimes(3);
    await verify(a!); // kept: used after b
    expect(spy).toHaveBeenCalledTimes(3);
    await verify(b!); // evicted by c
    expect(spy).toHaveBeenCalledTimes(4);
  });

  it('answers exactly as verifying every time would, whatever the order of tokens, times and key revocations', async () => {
    const tokens = await Promise.all([
      mint({ iat: T0, exp: T0 + 600 }),
      mint({ iat: T0, exp: T0 + 30 }),
      // Expires only after the maximum token age: the age rule decides.
      mint({ iat: T0 - MAX_AGE + 40, exp: T0 + 2 * MAX_AGE }),
      mint({ iat: T0 + 40, exp: T0 + 600 }),
      mint({ iat: T0, exp: T0 + 600 }, 'b', keyB.privateKey),
      // Not valid before T0 + 30 (with the leeway): only ever passes later.
      mint({ iat: T0, exp: T0 + 600, nbf: T0 + 40 }),
    ]);
    const candidates = [...tokens, tampered(tokens[0]), `${tokens[1]}x`];
    type Step = { kind: 'verify'; token: number } | { kind: 'tick'; seconds: number } | { kind: 'revoke-b' };
    const step: fc.Arbitrary<Step> = fc.oneof(
      { weight: 6, arbitrary: fc.record({ kind: fc.constant('verify' as const), token: fc.nat({ max: candidates.length - 1 }) }) },
      { weight: 3, arbitrary: fc.record({ kind: fc.constant('tick' as const), seconds: fc.integer({ min: -60, max: 120 }) }) },
      { weight: 1, arbitrary: fc.constant({ kind: 'revoke-b' as const }) },
    );
    await fc.assert(
      fc.asyncProperty(fc.array(step, { maxLength: 40 }), async (steps) => {
        const cachedRing = keyring();
        const plainRing = keyring();
        const cached = verifierAt(3, cachedRing.keys);
        const plain = verifierAt(0, plainRing.keys);
        for (const s of steps) {
          if (s.kind === 'tick') {
            cached.clock.seconds += s.seconds;
            plain.clock.seconds += s.seconds;
          } else if (s.kind === 'revoke-b') {
            cachedRing.revoke('b');
            plainRing.revoke('b');
          } else {
            const [got, want]: Verification[] = [await cached.verify(candidates[s.token]!), await plain.verify(candidates[s.token]!)];
            expect(got).toEqual(want);
          }
        }
      }),
      { numRuns: 300 * Number(process.env.FUZZ_RUNS ?? 1) },
    );
  });
});
