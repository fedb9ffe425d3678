/**
 * Graceful shutdown, end to end: SIGTERM (what a process manager sends) and SIGINT (Ctrl-C) while
 * token requests are in flight. The server must stop accepting, finish what it started, commit
 * every audit row, close the database and exit 0 within a bound; no caller may get a cut-off
 * answer, every token received must have its audit row, and the file must be sound afterwards.
 *
 * Two kinds of load:
 *   - "callers keep sending": the 16 callers go on sending on their keep-alive connections after
 *     the signal, as a load balancer or a busy workload does until it notices the server is gone;
 *   - "callers stop at the signal": the requests in flight at the signal are the last ones.
 */
import { connect, type Socket } from 'node:net';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import {
  basic,
  createClientWithCli,
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

const SIGNALS = ['SIGTERM', 'SIGINT'] as const;
const LOADS = ['callers keep sending', 'callers stop at the signal'] as const;

describe.each(SIGNALS)('%s', (signal) => {
  it.each(LOADS)('under load, %s: exits 0 within 15 s; every answer complete; every token received audited; integrity_check ok', async (mode) => {
    const server = await inst.start();
    const client = await createClientWithCli(inst.env, 'w');
    const auth = basic(client.client_id, client.client_secret);
    const warm = await requestToken(inst.issuer, auth);
    expect(warm).toMatchObject({ kind: 'token' });

    const load = startLoad({ issuer: inst.issuer, authorization: auth, concurrency: 16, maxRequests: 20_000, durationMs: 30_000, requestTimeoutMs: 20_000 });
    let code: number | null | undefined;
    let signalledAt = Date.now();
    try {
      await load.when((o) => o.kind === 'token', 100);
      expect(load.inFlight()).toBeGreaterThan(0);
      signalledAt = Date.now();
      server.process.kill(signal);
      if (mode === 'callers stop at the signal') void load.stop();
      code = await exitWithin(server, 15_000);
    } finally {
      await load.stop();
    }
    const exitedAfterMs = Date.now() - signalledAt;
    const outcomes = [warm, ...load.outcomes];
    const tokens = tokensOf(outcomes);
    const servedAfterSignal = tokens.filter((t) => t.at > signalledAt);
    const lastServedMs = Math.max(0, ...servedAfterSignal.map((t) => t.at - signalledAt));
    const stats =
      `exit ${code} ${exitedAfterMs} ms after ${signal}; ${servedAfterSignal.length} tokens received after the signal, the last ${lastServedMs} ms after it; ` +
      `outcomes ${summarize(outcomes)}`;

    // Soft: every property below is reported, not only the first that fails.
    expect.soft(code, stats).toBe(0);
    expect.soft(exitedAfterMs, stats).toBeLessThan(15_000);
    expect.soft(server.stdout.some((l) => l.includes('"msg":"stopped"')), `"stopped" logged; ${stats}`).toBe(true);
    expect.soft(errorLines(server), stats).toEqual([]);

    // Each caller got a complete 200 with a token, or no answer at all (connection refused, or
    // closed before any response header); never a cut-off body, never an error answer.
    expect.soft(outcomes.filter((o) => o.kind === 'truncated' || o.kind === 'malformed'), stats).toEqual([]);
    expect.soft(outcomes.filter((o) => o.kind === 'status'), stats).toEqual([]);

    expect.soft(await jtisWithoutAuditRow(inst.databaseUrl, tokens.map((t) => t.jti)), `tokens received without an audit row; ${stats}`).toEqual([]);
    expect.soft(await integrityCheck(inst.databaseUrl), stats).toEqual(['ok']);
  }, 90_000);
});

describe('requests the signal finds unfinished', () => {
  /** A token request whose body is still being sent: its headers and the first half of its body. */
  async function startRequest(): Promise<{ socket: Socket; rest: string; answer: Promise<string> }> {
    const client = await createClientWithCli(inst.env, 'w');
    const body = 'grant_type=client_credentials';
    const { port } = new URL(inst.issuer);
    const socket = connect(Number(port), '127.0.0.1');
    await new Promise((resolve) => socket.once('connect', resolve));
    let received = '';
    socket.on('data', (chunk: Buffer) => (received += chunk.toString()));
    const answer = new Promise<string>((resolve) => socket.once('close', () => resolve(received)));
    socket.write(
      `POST /oauth/token HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: ${basic(client.client_id, client.client_secret)}\r\n` +
        `Content-Type: application/x-www-form-urlencoded\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, 10)}`,
    );
    return { socket, rest: body.slice(10), answer };
  }

  it('answers one in flight at the signal with Connection: close, not keep-alive', async () => {
    const server = await inst.start();
    const { socket, rest, answer } = await startRequest();
    await new Promise((resolve) => setTimeout(resolve, 200));
    server.process.kill('SIGTERM');
    await new Promise((resolve) => setTimeout(resolve, 200));
    socket.write(rest);
    const response = await answer;
    expect(response).toMatch(/^HTTP\/1\.1 200 /);
    expect(response.toLowerCase()).toContain('\r\nconnection: close\r\n');
    expect(await exitWithin(server, 15_000)).toBe(0);
  });

  it('cuts off one stalled past the grace period, and still commits the audit log, closes the database and exits 0', async () => {
    const server = await inst.start();
    const { socket, answer } = await startRequest();
    await new Promise((resolve) => setTimeout(resolve, 200));
    server.process.kill('SIGTERM');
    expect(await exitWithin(server, 20_000)).toBe(0);
    expect(server.stdout.some((l) => l.includes('"msg":"stopped"'))).toBe(true);
    expect(server.stdout.some((l) => l.includes('"msg":"grace period over; closing the connections left"'))).toBe(true);
    await answer;
    expect(socket.destroyed).toBe(true);
    expect(await integrityCheck(inst.databaseUrl)).toEqual(['ok']);
  }, 40_000);
});
