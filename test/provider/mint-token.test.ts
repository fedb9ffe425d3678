/** oidc-provider as the minter: the token it signs, and the engine client instances it keeps. */
import { compactVerify, decodeProtectedHeader, type JWTPayload } from 'jose';
import { beforeEach, describe, expect, it, vi } from 'vitest';

import { generateKeyFile } from '../../src/keys/key-file.js';
import { Keystore, toSigningKey } from '../../src/keys/keystore.js';
import type * as AdapterModule from '../../src/provider/adapter.js';
import { createTokenMinter } from '../../src/provider/mint-token.js';
import { TestClock } from '../support/harness.js';

/** How often the engine looked each client id up in storage: once per instance it built. */
const lookups = vi.hoisted(() => new Map<string, number>());
vi.mock('../../src/provider/adapter.js', async (importOriginal) => {
  const actual = await importOriginal<typeof AdapterModule>();
  return {
    createAdapterFactory: () => (name: string) => {
      const adapter = actual.createAdapterFactory()(name);
      return {
        ...adapter,
        find: (id: string) => {
          lookups.set(id, (lookups.get(id) ?? 0) + 1);
          return adapter.find(id);
        },
      };
    },
  };
});

const ISSUER = 'https://issuer.example';
const grant = { audience: 'https://api.example', scopes: ['read', 'write'], ttl: 300 };

async function minter(clientInstances = 1000) {
  const keystore = new Keystore([toSigningKey(await generateKeyFile(2048, new TestClock(1_800_000_000_000), 'active', null))]);
  return { keystore, minter: createTokenMinter({ issuer: ISSUER, keystore, clientInstances }) };
}

const claimsOf = (token: string) => JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as JWTPayload;

beforeEach(() => lookups.clear());

describe('the minted token (RFC 9068)', () => {
  it('is an RS256 at+jwt by the active key, carrying exactly the grant, with iat and exp from the given time', async () => {
    const { keystore, minter: m } = await minter();
    const { accessToken: token, jti } = await m.mint('client-1', grant, 1_700_000_000);
    expect(decodeProtectedHeader(token)).toEqual({ alg: 'RS256', typ: 'at+jwt', kid: keystore.active.kid });
    await compactVerify(token, keystore.verificationKey(keystore.active.kid)!);
    expect(jti).toMatch(/^[A-Za-z0-9_-]{20,}$/);
    expect(claimsOf(token)).toEqual({
      iss: ISSUER,
      sub: 'client-1',
      client_id: 'client-1',
      aud: 'https://api.example',
      scope: 'read write',
      jti,
      iat: 1_700_000_000,
      exp: 1_700_000_300,
    });
  });

  it('leaves scope out when none was granted, and gives every token its own jti', async () => {
    const { minter: m } = await minter();
    const a = claimsOf((await m.mint('client-1', { ...grant, scopes: [] }, 1_700_000_000)).accessToken);
    const b = claimsOf((await m.mint('client-1', { ...grant, scopes: [] }, 1_700_000_000)).accessToken);
    expect(a).not.toHaveProperty('scope');
    expect(a.jti).not.toBe(b.jti);
  });
});

describe("the engine's client instances", () => {
  it('are built once per client and kept', async () => {
    const { minter: m } = await minter();
    for (let i = 0; i < 3; i += 1) await m.mint('client-1', grant, 1_700_000_000);
    // More clients than the engine's own cache keeps (100 to 200).
    for (let i = 0; i < 300; i += 1) await m.mint(`other-${i}`, grant, 1_700_000_000);
    await m.mint('client-1', grant, 1_700_000_000);
    expect(lookups.get('client-1')).toBe(1);
  });

  it('are bounded, the least recently used dropped first', async () => {
    const { minter: m } = await minter(2);
    for (const id of ['a', 'b', 'a', 'c', 'a', 'b']) await m.mint(id, grant, 1_700_000_000);
    // a is kept throughout; b is dropped for c, then built again.
    expect(Object.fromEntries(lookups)).toEqual({ a: 1, b: 2, c: 1 });
  });
});
