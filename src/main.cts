/**
 * Server entry (`npm start`): sizes libuv's thread pool, then runs the start-up sequence (server.ts).
 *
 * The pool signs every token (oidc-provider → jose → WebCrypto) and runs argon2. libuv's default of
 * 4 threads lets signing take CPU from the event loop, which does the rest of every request on one
 * thread and is what limits throughput: measured on 2 cores, 1 thread instead of 4 issued about 15%
 * more tokens per second (BENCHMARKS.md). So the pool gets a thread per core but one, at least one
 * and at most libuv's 4 (one event loop keeps about one signing thread busy; Node 20 counts a
 * container's host cores, not its CPU quota), unless UV_THREADPOOL_SIZE says otherwise. config.ts
 * applies the same rule and reads the variable back.
 *
 * CommonJS on purpose: libuv reads UV_THREADPOOL_SIZE once, when the pool first runs, and an ES
 * module entry is too late for that, because Node's ES module loader reads files through the pool.
 */
// eslint-disable-next-line @typescript-eslint/no-require-imports -- CommonJS on purpose, as said above
import os = require('node:os');

if (!process.env.UV_THREADPOOL_SIZE) process.env.UV_THREADPOOL_SIZE = String(Math.min(4, Math.max(1, os.availableParallelism() - 1)));
import('./server.js').catch((err: unknown) => {
  process.stderr.write(`tessera: ${String((err as Error)?.stack ?? err)}\n`);
  process.exit(1);
});
