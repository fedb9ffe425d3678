/**
 * The comparison point: a minimal, stock oidc-provider client_credentials server with plaintext
 * secrets, in-memory storage, no audit and JWT access tokens. Started as its own process by run.ts.
 */
import { generateKeyPairSync } from 'node:crypto';

import { exportJWK } from 'jose';
import { Provider } from 'oidc-provider';

const [port, clientId, clientSecret] = process.argv.slice(2) as [string, string, string];
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...(await exportJWK(privateKey)), kid: 'stock', alg: 'RS256', use: 'sig' };
const issuer = `http://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
  jwks: { keys: [jwk] },
  clients: [{ client_id: clientId, client_secret: clientSecret, grant_types: ['client_credentials'], response_types: [], redirect_uris: [] }],
  routes: { token: '/oauth/token' },
  ttl: { ClientCredentials: () => 3600 },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => 'https://api.example.com',
      getResourceServerInfo: () => ({ scope: 'read:data', audience: 'https://api.example.com', accessTokenFormat: 'jwt', accessTokenTTL: 3600, jwt: { sign: { alg: 'RS256' } } }),
      useGrantedResource: () => true,
    },
  },
});
provider.listen(Number(port), '127.0.0.1', () => process.stdout.write('listening\n'));
