/**
 * A server that cannot listen says why in one line naming the settings, and exits 1: no unhandled
 * 'error' event and stack trace for an operator to decode.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { freePort, startServer, type RunningServer } from '../support/process.js';

const dir = mkdtempSync(join(tmpdir(), 'tessera-start-up-'));
const servers: RunningServer[] = [];

afterAll(async () => {
  for (const s of servers) {
    if (s.process.exitCode === null && s.process.signalCode === null) s.process.kill('SIGKILL');
    await s.exited;
  }
  rmSync(dir, { recursive: true, force: true });
});

async function failedStart(name: string, env: NodeJS.ProcessEnv): Promise<{ code: number | null; stderr: string }> {
  const port = env.PORT ?? String(await freePort());
  const started = startServer(
    { PORT: port, ISSUER: `http://127.0.0.1:${port}`, DATABASE_URL: join(dir, `${name}.db`), KEYS_DIR: join(dir, `${name}-keys`), TESSERA_BOOTSTRAP_ADMIN: 'false', ...env },
    (s) => servers.push(s),
  );
  await expect(started).rejects.toThrow(/server exited with 1/);
  const server = servers.at(-1)!;
  return { code: await server.exited, stderr: server.stderr.join('') };
}

describe('start-up when the server cannot listen', () => {
  it('names PORT when the port is taken', async () => {
    const taken = createServer().listen(0, '127.0.0.1');
    await new Promise((resolve) => taken.once('listening', resolve));
    try {
      const port = String((taken.address() as { port: number }).port);
      const { code, stderr } = await failedStart('taken', { PORT: port });
      expect(code).toBe(1);
      expect(stderr).toContain(`tessera: cannot listen on HOST 127.0.0.1, PORT ${port}: EADDRINUSE`);
      expect(stderr).not.toMatch(/\n\s+at /);
    } finally {
      taken.close();
    }
  });

  it('names HOST when the address is not this machine’s', async () => {
    // 192.0.2.0/24 is reserved for documentation (RFC 5737): never a local address.
    const { code, stderr } = await failedStart('foreign', { HOST: '192.0.2.1' });
    expect(code).toBe(1);
    expect(stderr).toMatch(/tessera: cannot listen on HOST 192\.0\.2\.1, PORT \d+: EADDRNOTAVAIL/);
    expect(stderr).not.toMatch(/\n\s+at /);
  });
});

describe('a signal during start-up', () => {
  it('ends start-up at once, as a process with no handler would (PID 1 in a container ignores an unhandled SIGTERM)', async () => {
    const port = String(await freePort());
    // A 4096-bit first key: start-up is then long enough to be interrupted once the database is migrated.
    const env = { PORT: port, ISSUER: `http://127.0.0.1:${port}`, DATABASE_URL: join(dir, 'signal.db'), KEYS_DIR: join(dir, 'signal-keys'), KEY_SIZE: '4096', TESSERA_BOOTSTRAP_ADMIN: 'false' };
    let server: RunningServer | undefined;
    const started = startServer(env, (s) => {
      server = s;
      servers.push(s);
    });
    started.catch(() => {});
    while (!server!.stdout.some((l) => l.includes('"msg":"database migrated"'))) await new Promise((resolve) => setTimeout(resolve, 10));
    server!.process.kill('SIGTERM');
    expect(await server!.exited).toBe(143);
    expect(server!.stderr.join('')).toContain('tessera: SIGTERM during start-up; exiting');
    expect(server!.stdout.some((l) => l.includes('"msg":"listening"'))).toBe(false);
  });
});
