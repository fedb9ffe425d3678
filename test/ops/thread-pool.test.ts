/**
 * `npm start` (dist/src/main.cjs) sizes libuv's thread pool before the pool starts. Counted the
 * only way that sees what libuv did: the server process's threads, in /proc (Linux only).
 */
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { freePort, startServer, type RunningServer } from '../support/process.js';

const dir = mkdtempSync(join(tmpdir(), 'tessera-threads-'));
const servers: RunningServer[] = [];
// Every server here runs on a pretend 3-core machine, whose default pool (2 threads) is neither
// libuv's own 4 nor the floor of 1, whatever machine runs the test. A CommonJS preload does not
// start the pool.
const threeCores = join(dir, 'three-cores.cjs');
writeFileSync(threeCores, "require('node:os').availableParallelism = () => 3;\n");

afterAll(async () => {
  for (const s of servers) {
    if (s.process.exitCode === null && s.process.signalCode === null) s.process.kill('SIGKILL');
    await s.exited;
  }
  rmSync(dir, { recursive: true, force: true });
});

/** Threads of a server started with `env`, once it has answered a request, then stopped. */
async function threadsOf(name: string, env: NodeJS.ProcessEnv): Promise<number> {
  const port = await freePort();
  const server = await startServer(
    { PORT: String(port), ISSUER: `http://127.0.0.1:${port}`, DATABASE_URL: join(dir, `${name}.db`), KEYS_DIR: join(dir, `${name}-keys`), TESSERA_BOOTSTRAP_ADMIN: 'false', NODE_OPTIONS: `--require ${threeCores}`, ...env },
    (s) => servers.push(s),
  );
  expect((await fetch(`http://127.0.0.1:${port}/readyz`)).status).toBe(200);
  const threads = readdirSync(`/proc/${server.process.pid}/task`).length;
  server.process.kill('SIGTERM');
  expect(await server.exited).toBe(0);
  return threads;
}

describe.runIf(process.platform === 'linux')('npm start', () => {
  it("gives libuv's pool a thread per core but one, unless UV_THREADPOOL_SIZE says otherwise", async () => {
    const sized = await threadsOf('default', {});
    const four = await threadsOf('four', { UV_THREADPOOL_SIZE: '4' });
    // Everything else about the two processes is the same, so they differ by the pool alone: 4 − 2.
    expect(four - sized).toBe(2);
  });
});
