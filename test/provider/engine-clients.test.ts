import { describe, expect, it } from 'vitest';

import { generateKeyFile } from '../../src/keys/key-file.js';
import { Keystore, toSigningKey } from '../../src/keys/keystore.js';
import { createProvider } from '../../src/provider/create-provider.js';
import type { TokenHooks } from '../../src/token/index.js';

const unused = () => {
  throw new Error('not called here');
};
const hooks: TokenHooks = {
  compareClientSecret: () => Promise.resolve(false),
  defaultResource: unused,
  getResourceServerInfo: unused,
  accessTokenTtl: unused,
  onGrantError: unused,
  onServerError: unused,
};

async function engine(clientInstances: number) {
  const keystore = new Keystore([toSigningKey(await generateKeyFile(2048, 1_800_000_000, 'active', null))]);
  return createProvider({ issuer: 'https://issuer.example', keystore, hooks, trustProxy: false, clientInstances });
}

describe("the engine's client instances", () => {
  it('are kept for more clients than the engine would keep itself (at most 200)', async () => {
    const provider = await engine(1000);
    const first = await provider.Client.find('client-0');
    for (let i = 1; i <= 300; i += 1) await provider.Client.find(`client-${i}`);
    expect(await provider.Client.find('client-0')).toBe(first);
    expect(first?.clientId).toBe('client-0');
  });

  it('are bounded', async () => {
    const provider = await engine(2);
    const first = await provider.Client.find('client-0');
    for (let i = 1; i <= 300; i += 1) await provider.Client.find(`client-${i}`);
    const again = await provider.Client.find('client-0');
    expect(again).not.toBe(first);
    expect(again?.clientId).toBe('client-0');
  });
});
