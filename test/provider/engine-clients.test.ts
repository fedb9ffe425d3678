import { describe, expect, it } from 'vitest';

import { generateKeyFile } from '../../src/keys/key-file.js';
import { Keystore, toSigningKey } from '../../src/keys/keystore.js';
import { createProvider } from '../../src/provider/create-provider.js';
import type { TokenHooks } from '../../src/token/index.js';
import { TestClock } from '../support/harness.js';

const unused = () => {
  throw new Error('not called here');
};
// Stands in for authenticate-client.ts: the secret "right" is every client's.
const hooks: TokenHooks = {
  compareClientSecret: (presented) => Promise.resolve(presented === 'right'),
  defaultResource: unused,
  getResourceServerInfo: unused,
  accessTokenTtl: unused,
  onGrantError: unused,
  onServerError: unused,
};

async function engine(clientInstances: number) {
  const keystore = new Keystore([toSigningKey(await generateKeyFile(2048, new TestClock(1_800_000_000_000), 'active', null))]);
  const provider = createProvider({ issuer: 'https://issuer.example', keystore, hooks, trustProxy: false, clientInstances });
  /** The engine's steps for a token request: look the client up, then authenticate it. */
  const request = async (id: string, secret: string) => {
    const client = (await provider.Client.find(id))!;
    await client.compareClientSecret(secret);
    return client;
  };
  /** Enough other clients to push `id` out of the engine's own cache (at most 200). */
  const crowdOut = async (secret: string) => {
    for (let i = 1; i <= 300; i += 1) await request(`other-${i}`, secret);
  };
  return { provider, request, crowdOut };
}

describe("the engine's client instances", () => {
  it('are kept, for clients that authenticated, beyond the engine own cache', async () => {
    const { provider, request, crowdOut } = await engine(1000);
    const first = await request('client-0', 'right');
    await crowdOut('right');
    expect(await provider.Client.find('client-0')).toBe(first);
    expect(first.clientId).toBe('client-0');
  });

  it('are not kept for ids that failed to authenticate', async () => {
    const { provider, request, crowdOut } = await engine(1000);
    const first = await request('guess', 'wrong');
    await crowdOut('wrong');
    expect(await provider.Client.find('guess')).not.toBe(first);
  });

  it('are bounded', async () => {
    const { provider, request, crowdOut } = await engine(2);
    const first = await request('client-0', 'right');
    await crowdOut('right');
    const again = await provider.Client.find('client-0');
    expect(again).not.toBe(first);
    expect(again?.clientId).toBe('client-0');
  });
});
