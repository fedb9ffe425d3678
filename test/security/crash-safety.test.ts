/**
 * Crash safety, end to end: the built server is SIGKILLed while token requests are in flight,
 * several times over, on the same SQLite file and keys directory. A token is released only after
 * its audit row is committed, so every token a caller actually received must have its
 * `token.issued` row, the database must stay consistent, and the server must restart cleanly
 * (no stale key lock, no recovery error) and serve at once.
 */

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import type { RunningServer } from '../support/process.js';
import {
  basic,
  createClientWithCli,
  credentialsInOutput,
  errorLines,
  exitWithin,
  install,
  integrityCheck,
  jtisWithoutAuditRow,
  requestToken,
  startLoad,
  summarize,
  tokensOf,
  type Installation,
} from './e2e-support.js';

let inst: Installation;
beforeEach(async () => {
  inst = await install();
});
afterEach(async () => {
  await inst.cleanup();
});

describe('SIGKILL while token requests are in flight', () => {
  // Kill after a different number of tokens each time, so the kill lands at different points.
  const KILL_AFTER_TOKENS = [25, 80, 160];

  it('every token received before the kill has its audit row; the database passes integrity_check; restarts are clean', async () => {
    let server: RunningServer = await inst.start();
    const client = await createClientWithCli(inst.env, 'w');
    const auth = basic(client.client_id, client.client_secret);
    const received: string[] = [];
    const tokens: string[] = [];

    for (const [cycle, threshold] of KILL_AFTER_TOKENS.entries()) {
      // The (re)started server answers at once.
      const first = await requestToken(inst.issuer, auth);
      expect(first, `cycle ${cycle}: first request after start`).toMatchObject({ kind: 'token' });
      if (first.kind === 'token') received.push(first.jti);
      if (first.kind === 'token') tokens.push(first.token);

      const load = startLoad({ issuer: inst.issuer, authorization: auth, concurrency: 16, maxRequests: 20_000, durationMs: 20_000, requestTimeoutMs: 15_000 });
      try {
        await load.when((o) => o.kind === 'token', threshold);
        // Every worker sends its next request as soon as it has an answer: requests are in flight now.
        expect(load.inFlight()).toBeGreaterThan(0);
        server.process.kill('SIGKILL');
        await exitWithin(server, 10_000);
      } finally {
        await load.stop();
      }
      const outcomes = load.outcomes;
      // A killed server may cut an answer off (that token was not received), but a complete body is
      // always a well-formed answer.
      expect(outcomes.filter((o) => o.kind === 'malformed'), summarize(outcomes)).toEqual([]);
      expect(outcomes.some((o) => o.kind === 'no-answer'), `cycle ${cycle}: the kill should have cut requests off: ${summarize(outcomes)}`).toBe(true);
      received.push(...tokensOf(outcomes).map((t) => t.jti));
      tokens.push(...tokensOf(outcomes).map((t) => t.token));

      // The file as the crash left it (opened read-only, before the server is restarted on it).
      expect(await integrityCheck(inst.databaseUrl), `cycle ${cycle}: integrity after SIGKILL`).toEqual(['ok']);
      expect(await jtisWithoutAuditRow(inst.databaseUrl, received), `cycle ${cycle}: tokens received without an audit row`).toEqual([]);

      // A kill during a key tick (every second here) may land while the key lock is held: the
      // kernel releases it with the process, so the restart must not wait for it.
      const restartAt = Date.now();
      server = await inst.start();
      expect(Date.now() - restartAt, `cycle ${cycle}: restart with a dead holder's key lock`).toBeLessThan(15_000);
      expect(errorLines(server), `cycle ${cycle}: error lines at restart`).toEqual([]);
      expect(server.stderr.join(''), `cycle ${cycle}: stderr at restart`).not.toMatch(/tessera:|Error|locked/);
    }

    // After the last restart: it serves, the file is sound (read beside the running server), and
    // every token received over all the cycles is accounted for.
    const after = await requestToken(inst.issuer, auth);
    expect(after).toMatchObject({ kind: 'token' });
    if (after.kind === 'token') received.push(after.jti);
    expect(new Set(received).size).toBe(received.length);
    expect(await integrityCheck(inst.databaseUrl)).toEqual(['ok']);
    expect(await jtisWithoutAuditRow(inst.databaseUrl, received)).toEqual([]);

    server.process.kill('SIGTERM');
    expect(await exitWithin(server, 15_000)).toBe(0);
    expect(await integrityCheck(inst.databaseUrl)).toEqual(['ok']);
    // Every server's log lines (info level: access log and audit mirror) hold no secret or token.
    expect(credentialsInOutput(inst.servers, [client.client_secret, auth, ...tokens])).toEqual([]);
  }, 180_000);
});
