/**
 * Key generation must leave libuv's pool alone: the server may give it a single thread
 * (src/main.cts), and that thread signs every token.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';

import { describe, expect, it } from 'vitest';

import { ROOT } from '../support/process.js';

// Run by a process whose pool has one thread: pool jobs chained one after another, counted until
// a 3072-bit key is ready. While the pool's only thread searched for primes, none could finish.
const SCRIPT = `
  import { pbkdf2 } from 'node:crypto';
  const { generateKeyFile } = await import(${JSON.stringify(pathToFileURL(join(ROOT, 'dist/src/keys/key-file.js')).href)});
  let poolJobs = 0;
  let generating = true;
  const next = () => pbkdf2('p', 's', 1, 32, 'sha256', () => { poolJobs += 1; if (generating) next(); });
  const key = generateKeyFile(3072, { now: () => 0 }, 'active', null);
  next();
  const file = await key;
  generating = false;
  process.stdout.write(JSON.stringify({ poolJobs, n: file.private_jwk.n.length }));
`;

describe('generateKeyFile', () => {
  it("makes an RSA key of the size asked, without holding libuv's pool while it does", async () => {
    const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', SCRIPT], { cwd: ROOT, env: { PATH: process.env.PATH, UV_THREADPOOL_SIZE: '1' } });
    const { poolJobs, n } = JSON.parse(stdout) as { poolJobs: number; n: number };
    expect(n).toBe(512); // 3072 bits, base64url
    expect(poolJobs).toBeGreaterThan(20);
  });

});
