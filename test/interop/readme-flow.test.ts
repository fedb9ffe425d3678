/**
 * The README's new-user flow against the built server, driven by unmodified, widely used
 * libraries: openid-client as the workload, jose, jwks-rsa + jsonwebtoken and oauth4webapi's RFC 9068
 * validation as gateways.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { createRemoteJWKSet, jwtVerify } from 'jose';
import jwt from 'jsonwebtoken';
import jwksRsa from 'jwks-rsa';
import * as o4w from 'oauth4webapi';
import * as oauth from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { auditRowsOutput, cliOutputs, credentialLines, cutOnce, privateKeyParts, serverOutputs, storedSecretHashes, withoutBootstrapBanner, type CreatedClient } from '../security/e2e-support.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { ROOT, freePort, startServer, tessera, type RunningServer } from '../support/process.js';

const API = 'https://api.example.com';

let dir: string;
let database: TestDatabase;
let env: NodeJS.ProcessEnv;
let issuer: string;
let server: RunningServer;
let clientId: string;
let clientSecret: string;
/** Every server this file starts, in order, so the last test can read all they wrote. */
const servers: RunningServer[] = [];
/** Every `tessera` run, with what it wrote. */
const cliRuns: { args: string[]; stdout: string; stderr: string }[] = [];
/** Every access token and Authorization value the test sent or received (secrets come from cliRuns). */
const credentials: string[] = [];

const start = (serverEnv: NodeJS.ProcessEnv) => startServer(serverEnv, (s) => servers.push(s));

async function cli(...args: string[]): Promise<{ stdout: string; stderr: string }> {
  const run = await tessera(env, ...args);
  cliRuns.push({ args, ...run });
  return run;
}

/** openid-client's grant, keeping the token for the output scan. */
async function grant(config: oauth.Configuration, parameters: Record<string, string>) {
  const tokens = await oauth.clientCredentialsGrant(config, parameters);
  credentials.push(tokens.access_token);
  return tokens;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tessera-e2e-'));
  database = await createTestDatabase(join(dir, 'data'));
  const port = await freePort();
  issuer = `http://127.0.0.1:${port}`;
  env = { PORT: String(port), ISSUER: issuer, DATABASE_URL: database.url, KEYS_DIR: join(dir, 'keys'), KEY_RELOAD_INTERVAL: '1' };
  server = await start(env);
  const { stdout } = await cli('clients', 'create', '--name', 'billing-agent', '--scope', 'read:data write:logs', '--audience', API, '--json');
  ({ client_id: clientId, client_secret: clientSecret } = JSON.parse(stdout) as { client_id: string; client_secret: string });
});

afterAll(async () => {
  for (const s of servers) {
    if (s.process.exitCode === null && s.process.signalCode === null) s.process.kill('SIGKILL');
    await s.exited;
  }
  await database?.drop();
  rmSync(dir, { recursive: true, force: true });
});

describe('the README flow', () => {
  it('`npm start` runs the compiled server this test starts', () => {
    const { scripts } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    expect(scripts.start).toBe('node dist/src/main.cjs');
  });

  it('a workload gets a token with curl-style Basic auth', async () => {
    const authorization = `Basic ${Buffer.from(`${clientId}:${clientSecret}`).toString('base64')}`;
    credentials.push(authorization);
    const res = await fetch(`${issuer}/oauth/token`, {
      method: 'POST',
      headers: { Authorization: authorization, 'Content-Type': 'application/x-www-form-urlencoded' },
      body: 'grant_type=client_credentials&scope=read:data',
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('no-store');
    const body = (await res.json()) as { access_token: string };
    credentials.push(body.access_token);
    expect(body).toEqual({ access_token: expect.any(String), token_type: 'Bearer', expires_in: 3600, scope: 'read:data' });
  });
});

describe('openid-client as the workload', () => {
  const discover = (auth: oauth.ClientAuth) =>
    oauth.discovery(new URL(issuer), clientId, undefined, auth, { algorithm: 'oauth2', execute: [oauth.allowInsecureRequests] });

  it('discovers the server through RFC 8414 metadata', async () => {
    const config = await discover(oauth.ClientSecretBasic(clientSecret));
    expect(config.serverMetadata()).toMatchObject({ issuer, token_endpoint: `${issuer}/oauth/token`, jwks_uri: `${issuer}/.well-known/jwks.json` });
  });

  it('gets a token with client_secret_basic and an RFC 8707 resource', async () => {
    const config = await discover(oauth.ClientSecretBasic(clientSecret));
    const tokens = await grant(config, { scope: 'read:data write:logs', resource: API });
    expect(tokens).toMatchObject({ token_type: 'bearer', scope: 'read:data write:logs', expires_in: 3600 });
  });

  it('is refused with invalid_client for a wrong secret', async () => {
    const config = await discover(oauth.ClientSecretBasic(`${clientSecret}x`));
    // A 401 with WWW-Authenticate surfaces as a parsed challenge (RFC 6749 §5.2 + RFC 7235).
    await expect(grant(config, {})).rejects.toMatchObject({
      status: 401,
      cause: [{ scheme: 'basic', parameters: { realm: issuer, error: 'invalid_client', error_description: 'client authentication failed' } }],
    });
  });

  it('is refused with invalid_scope for a scope the client may not have', async () => {
    const config = await discover(oauth.ClientSecretBasic(clientSecret));
    await expect(grant(config, { scope: 'admin' })).rejects.toMatchObject({ error: 'invalid_scope', status: 400 });
  });

  it('gets a token with client_secret_post for a client registered for it', async () => {
    const { stdout } = await cli('clients', 'create', '--name', 'poster', '--audience', API, '--auth-method', 'client_secret_post', '--json');
    const poster = JSON.parse(stdout) as { client_id: string; client_secret: string };
    const config = await oauth.discovery(new URL(issuer), poster.client_id, undefined, oauth.ClientSecretPost(poster.client_secret), {
      algorithm: 'oauth2',
      execute: [oauth.allowInsecureRequests],
    });
    expect((await grant(config, {})).access_token).toEqual(expect.any(String));
  });
});

describe('gateways verify offline against the JWKS found through discovery', () => {
  let accessToken: string;
  let jwksUri: string;

  beforeAll(async () => {
    const config = await oauth.discovery(new URL(issuer), clientId, undefined, oauth.ClientSecretBasic(clientSecret), {
      algorithm: 'oauth2',
      execute: [oauth.allowInsecureRequests],
    });
    jwksUri = config.serverMetadata().jwks_uri!;
    accessToken = (await grant(config, { scope: 'read:data' })).access_token;
  });

  it('jose: RS256, typ at+jwt, issuer, audience', async () => {
    const { payload, protectedHeader } = await jwtVerify(accessToken, createRemoteJWKSet(new URL(jwksUri)), {
      issuer,
      audience: API,
      typ: 'at+jwt',
      algorithms: ['RS256'],
      requiredClaims: ['jti', 'iat', 'exp', 'sub', 'client_id', 'scope'],
    });
    expect(protectedHeader.typ).toBe('at+jwt');
    expect(payload).toMatchObject({ sub: clientId, client_id: clientId, scope: 'read:data' });
  });

  it('jwks-rsa + jsonwebtoken: key chosen by kid', async () => {
    const { header } = jwt.decode(accessToken, { complete: true })!;
    const key = await jwksRsa({ jwksUri }).getSigningKey(header.kid);
    const payload = jwt.verify(accessToken, key.getPublicKey(), { algorithms: ['RS256'], issuer, audience: API }) as jwt.JwtPayload;
    expect(payload.client_id).toBe(clientId);
  });

  it('oauth4webapi: the RFC 9068 validation of a request bearing the token, with metadata from discovery', async () => {
    const url = new URL(issuer);
    const as = await o4w.processDiscoveryResponse(url, await o4w.discoveryRequest(url, { algorithm: 'oauth2', [o4w.allowInsecureRequests]: true }));
    const request = (token: string) => new Request(`${API}/data`, { headers: { authorization: `Bearer ${token}` } });
    const claims = await o4w.validateJwtAccessToken(as, request(accessToken), API, { [o4w.allowInsecureRequests]: true });
    expect(claims).toMatchObject({ iss: issuer, aud: API, sub: clientId, client_id: clientId, scope: 'read:data' });
    await expect(o4w.validateJwtAccessToken(as, request(accessToken), 'https://other.example.com', { [o4w.allowInsecureRequests]: true })).rejects.toThrow();
  });

  it('a tampered token fails verification', async () => {
    const [h, p, s] = accessToken.split('.');
    const forged = Buffer.from(JSON.stringify({ ...(JSON.parse(Buffer.from(p!, 'base64url').toString()) as object), scope: 'admin' })).toString('base64url');
    await expect(jwtVerify(`${h}.${forged}.${s}`, createRemoteJWKSet(new URL(jwksUri)), { issuer })).rejects.toThrow();
  });
});

describe('openid-client as a resource server: introspect, revoke, introspect', () => {
  it('sees the token active, revokes it, and sees it inactive, across a restart', async () => {
    const { stdout } = await cli('clients', 'create', '--name', 'billing-api', '--introspect', API, '--json');
    const rs = JSON.parse(stdout) as { client_id: string; client_secret: string };
    const asResourceServer = await oauth.discovery(new URL(issuer), rs.client_id, undefined, oauth.ClientSecretBasic(rs.client_secret), {
      algorithm: 'oauth2',
      execute: [oauth.allowInsecureRequests],
    });
    const asWorkload = await oauth.discovery(new URL(issuer), clientId, undefined, oauth.ClientSecretBasic(clientSecret), {
      algorithm: 'oauth2',
      execute: [oauth.allowInsecureRequests],
    });
    const { access_token } = await grant(asWorkload, { scope: 'read:data' });

    expect(await oauth.tokenIntrospection(asResourceServer, access_token)).toMatchObject({
      active: true,
      client_id: clientId,
      aud: API,
      scope: 'read:data',
      token_type: 'Bearer',
    });
    await oauth.tokenRevocation(asWorkload, access_token);
    expect(await oauth.tokenIntrospection(asResourceServer, access_token)).toEqual({ active: false });

    server.process.kill('SIGTERM');
    await server.exited;
    server = await start(env);
    expect(await oauth.tokenIntrospection(asResourceServer, access_token)).toEqual({ active: false });
  });

  it('a token of a client revoked wholesale from the CLI is inactive at once', async () => {
    const { stdout } = await cli('clients', 'create', '--name', 'gateway', '--introspect', '*', '--auth-method', 'client_secret_post', '--json');
    const rs = JSON.parse(stdout) as { client_id: string; client_secret: string };
    const asResourceServer = await oauth.discovery(new URL(issuer), rs.client_id, undefined, oauth.ClientSecretPost(rs.client_secret), {
      algorithm: 'oauth2',
      execute: [oauth.allowInsecureRequests],
    });
    const created = JSON.parse((await cli('clients', 'create', '--name', 'doomed', '--audience', API, '--json')).stdout) as { client_id: string; client_secret: string };
    const asDoomed = await oauth.discovery(new URL(issuer), created.client_id, undefined, oauth.ClientSecretBasic(created.client_secret), {
      algorithm: 'oauth2',
      execute: [oauth.allowInsecureRequests],
    });
    const { access_token } = await grant(asDoomed, {});
    expect((await oauth.tokenIntrospection(asResourceServer, access_token)).active).toBe(true);
    await cli('clients', 'revoke-tokens', created.client_id);
    expect((await oauth.tokenIntrospection(asResourceServer, access_token)).active).toBe(false);
  });
});

describe('bootstrap admin', () => {
  it('was printed once on the first start, on the console only, and its credentials open the admin API', async () => {
    // The banner is on the first server's stderr (the last test checks the secret is nowhere else).
    const { bootstrap } = withoutBootstrapBanner(serverOutputs(servers.slice(0, 1)));
    expect(bootstrap).toBeDefined();
    const { clientId: id, secret } = bootstrap!;

    const config = await oauth.discovery(new URL(issuer), id, undefined, oauth.ClientSecretBasic(secret), { algorithm: 'oauth2', execute: [oauth.allowInsecureRequests] });
    const { access_token } = await grant(config, {});
    credentials.push(`Bearer ${access_token}`);
    const res = await fetch(`${issuer}/admin/clients?limit=1`, { headers: { Authorization: `Bearer ${access_token}` } });
    expect(res.status).toBe(200);
  });

  it('is not created again on a restart, nor when TESSERA_BOOTSTRAP_ADMIN=false', async () => {
    server.process.kill('SIGTERM');
    await server.exited;
    server = await start(env);
    expect(server.stderr.join('')).not.toContain('bootstrap admin');

    const fresh = mkdtempSync(join(tmpdir(), 'tessera-e2e-nobootstrap-'));
    const freshDatabase = await createTestDatabase(fresh);
    const port = await freePort();
    const other = await start({ ...env, PORT: String(port), ISSUER: `http://127.0.0.1:${port}`, DATABASE_URL: freshDatabase.url, KEYS_DIR: join(fresh, 'keys'), TESSERA_BOOTSTRAP_ADMIN: 'false' });
    other.process.kill('SIGTERM');
    await other.exited;
    await freshDatabase.drop();
    rmSync(fresh, { recursive: true, force: true });
    expect(other.stderr.join('')).not.toContain('bootstrap admin');
  });
});

describe('key changes made by the CLI reach the running server without a restart', () => {
  const kids = async () => ((await (await fetch(`${issuer}/.well-known/jwks.json`)).json()) as { keys: { kid: string }[] }).keys.map((k) => k.kid);
  /** Polls (bounded: 10 s) until the condition holds. */
  const eventually = async (check: () => Promise<boolean>) => {
    for (const deadline = Date.now() + 10_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 100))) {
      if (await check()) return;
    }
    throw new Error('condition not met within 10 s');
  };
  const signingKid = async () => {
    const config = await oauth.discovery(new URL(issuer), clientId, undefined, oauth.ClientSecretBasic(clientSecret), { algorithm: 'oauth2', execute: [oauth.allowInsecureRequests] });
    const { access_token } = await grant(config, {});
    return { kid: jwt.decode(access_token, { complete: true })!.header.kid!, token: access_token };
  };

  it('rotate --now: the server publishes and signs with the new key; revoke: the old one is gone', async () => {
    const before = await signingKid();
    const rotated = JSON.parse((await cli('keys', 'rotate', '--now', '--json')).stdout) as { kid: string; state: string };
    expect(rotated.state).toBe('active');
    await eventually(async () => (await signingKid()).kid === rotated.kid);
    expect(await kids()).toEqual(expect.arrayContaining([before.kid, rotated.kid]));

    // Thumbprints may begin with '-': after '--' they are never read as options.
    await cli('keys', 'revoke', '--', before.kid);
    await eventually(async () => !(await kids()).includes(before.kid));
    await expect(jwtVerify(before.token, createRemoteJWKSet(new URL(`${issuer}/.well-known/jwks.json`)), { issuer })).rejects.toThrow();
  });
});

describe('restart and shutdown', () => {
  it('keeps its signing key across a restart, then stops cleanly on SIGTERM', async () => {
    const before = (await (await fetch(`${issuer}/.well-known/jwks.json`)).json()) as { keys: { kid: string }[] };
    server.process.kill('SIGTERM');
    expect(await server.exited).toBe(0);
    expect(server.stdout.some((l) => l.includes('"msg":"stopped"'))).toBe(true);

    server = await start(env);
    const after = (await (await fetch(`${issuer}/.well-known/jwks.json`)).json()) as { keys: { kid: string }[] };
    expect(after.keys.map((k) => k.kid)).toEqual(before.keys.map((k) => k.kid));
  });
});

describe('process output', () => {
  it('holds no secret, token, Authorization value, stored hash or key material, but each secret where it is shown once by design', async () => {
    // What anyone may read besides the logs: the probes' and the metrics' answers.
    const answers = await Promise.all(
      ['/readyz', '/metrics', '/healthz'].map(async (path) => ({ name: `GET ${path}`, stream: 'stdout' as const, text: await (await fetch(`${issuer}${path}`)).text() })),
    );
    expect(answers.map((a) => a.text.length > 0)).toEqual([true, true, true]);
    server.process.kill('SIGTERM');
    expect(await server.exited).toBe(0);

    // The bootstrap admin's secret: only on the client_secret line of the banner on the first
    // start's stderr (withoutBootstrapBanner cuts that line, and the scan below looks for the
    // secret in everything else, JSON log lines included).
    const { bootstrap, outputs: fromServers } = withoutBootstrapBanner(serverOutputs(servers));
    expect(bootstrap).toBeDefined();
    expect(servers[0]!.stderr.join('')).toContain(`client_secret: ${bootstrap!.secret}\n`);
    // A client's secret: once, in the JSON the `clients create` that made it prints on stdout.
    const created: CreatedClient[] = [];
    const fromCli = cliRuns.flatMap((run) => {
      if (run.args[0] !== 'clients' || run.args[1] !== 'create') return cliOutputs(run.args, run);
      const client = JSON.parse(run.stdout) as CreatedClient;
      created.push(client);
      return cliOutputs(run.args, { stdout: cutOnce(run.stdout, `"client_secret": ${JSON.stringify(client.client_secret)}`), stderr: run.stderr });
    });
    const clients = [...created, { client_id: bootstrap!.clientId, client_secret: bootstrap!.secret }];
    const hashes = await storedSecretHashes(env.DATABASE_URL!);
    // One secret per client, and the test knows each of them.
    expect(hashes).toHaveLength(clients.length);

    // Authorization values are found however the client encoded them: credentialLines decodes.
    const secrets = clients.map((c) => c.client_secret);
    const keyParts = privateKeyParts(env.KEYS_DIR!);
    expect(keyParts.length).toBeGreaterThanOrEqual(6);
    const outputs = [...fromServers, ...fromCli, ...answers, await auditRowsOutput(env.DATABASE_URL!)];
    expect(credentialLines(outputs, [...secrets, ...credentials, ...hashes, ...keyParts])).toEqual([]);
  });
});
