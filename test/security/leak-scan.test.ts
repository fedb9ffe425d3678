/**
 * The output scan the end-to-end tests rely on (e2e-support.ts) finds the leaks it is meant to:
 * fed made-up process output, it flags each way a credential can show, and lets the bootstrap
 * secret stand only on its banner line.
 */
import { describe, expect, it } from 'vitest';

import { basic, credentialLines, credentialsInOutput, cutOnce, withoutBootstrapBanner, type ProcessOutput } from './e2e-support.js';
import type { RunningServer } from '../support/process.js';

const SECRET = 'tsec_0123456789abcdef_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_abcde';
const OTHER_SECRET = 'tsec_fedcba9876543210_zyxwvutsrqponmlkjihgfedcbaZYXWVUTSRQP-_9876';
const TOKEN = `eyJhbGciOiJSUzI1NiJ9.eyJqdGkiOiJ4In0.${'S'.repeat(342)}`;
const HASH = '$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$ZGlnZXN0ZGlnZXN0ZGlnZXN0ZGlnZXN0ZGlnZXN0ZGk';
const CLIENT = '0bb29c98-2542-4467-b399-c91c18b88d0d';

const banner = (secret: string) =>
  [
    '',
    '================ Tessera bootstrap admin client (shown once) ================',
    `client_id:     ${CLIENT}`,
    `client_secret: ${secret}`,
    'Store the secret now; it cannot be shown again. Get an admin token with:',
    '  curl -u "$ID:$SECRET" -d grant_type=client_credentials -d audience=http://127.0.0.1:1/admin http://127.0.0.1:1/oauth/token',
    '==============================================================================',
    '',
  ].join('\n');

const out = (text: string, stream: 'stdout' | 'stderr' = 'stdout'): ProcessOutput => ({ name: 'p', stream, text });
const server = (stdout: string[], stderr: string[]) => ({ stdout, stderr }) as unknown as RunningServer;
const logLine = (fields: object) => JSON.stringify({ level: 30, msg: 'request', ...fields });

describe('credentialLines', () => {
  it('passes clean output, scrubbed values and public secret ids', () => {
    expect(credentialLines([out(logLine({ client_id: CLIENT, secret_id: '0123456789abcdef', reason: 'tsec_[redacted]' }))], [SECRET, TOKEN, HASH])).toEqual([]);
  });

  it.each([
    ['the secret', logLine({ client_secret: SECRET })],
    ['its random part alone', logLine({ x: SECRET.slice(22) })],
    ['the secret percent-encoded', `body=client_secret%3D${encodeURIComponent(SECRET).replaceAll('_', '%5F').replaceAll('-', '%2D')}`],
    ['the base64 of id:secret as curl sends it', logLine({ authorization: basic(CLIENT, SECRET) })],
    ['the base64 of id:secret as openid-client sends it', `Basic ${Buffer.from(`${CLIENT.replaceAll('-', '%2D')}:${SECRET.replaceAll('_', '%5F').replaceAll('-', '%2D')}`).toString('base64')}`],
    ['a wrong secret that extends the right one', `Basic ${Buffer.from(`${CLIENT}:${SECRET}x`).toString('base64')}`],
    ['the token', logLine({ token: TOKEN })],
    ['the token signature alone', `sig=${TOKEN.split('.')[2]!}`],
    ['the hash', logLine({ hash: HASH })],
    ['the hash digest alone', HASH.split('$').at(-1)!],
    ['a secret the test never saw', logLine({ presented: OTHER_SECRET })],
    ['a token the test never saw', `Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ5In0.${'T'.repeat(342)}`],
  ])('flags %s', (_label, line) => {
    expect(credentialLines([out(`fine\n${line}\nfine`)], [SECRET, TOKEN, HASH])).toEqual([`p: ${line}`.slice(0, 300)]);
  });
});

describe('the bootstrap secret', () => {
  it('may stand on the client_secret line of the one banner on stderr', () => {
    expect(credentialsInOutput([server(['{"msg":"listening"}'], [banner(SECRET)])], [])).toEqual([]);
    expect(withoutBootstrapBanner([out(banner(SECRET), 'stderr')]).bootstrap).toEqual({ clientId: CLIENT, secret: SECRET });
  });

  it('is flagged anywhere else: a JSON log line, another line of the banner, stdout', () => {
    const inLog = server([logLine({ client_secret: SECRET })], [banner(SECRET)]);
    expect(credentialsInOutput([inLog], [])).toHaveLength(1);
    const twiceInBanner = server([], [banner(SECRET).replace('Store the secret now', `Store ${SECRET} now`)]);
    expect(credentialsInOutput([twiceInBanner], [])).toHaveLength(1);
    const laterServer = server([], [`tessera: ${SECRET}\n`]);
    expect(credentialsInOutput([server([], [banner(SECRET)]), laterServer], [])).toHaveLength(1);
  });

  it('refuses a second banner, or one on stdout', () => {
    expect(() => credentialsInOutput([server([], [banner(SECRET)]), server([], [banner(OTHER_SECRET)])], [])).toThrow(/more than once/);
    expect(() => credentialsInOutput([server(banner(SECRET).split('\n'), [])], [])).toThrow(/not on stderr/);
  });
});

describe('cutOnce', () => {
  it('cuts exactly one occurrence, and refuses none or several', () => {
    expect(cutOnce('a x b', 'x')).toBe('a  b');
    expect(() => cutOnce('a b', 'x')).toThrow(/found 0/);
    expect(() => cutOnce('x x', 'x')).toThrow(/found 2/);
  });
});
