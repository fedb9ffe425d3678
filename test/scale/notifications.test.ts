/**
 * The LISTEN connection between instances (db/notifications.ts): one dropped silently, as a NAT or
 * a firewall drops an idle connection, must be noticed, reported as `missed` and replaced.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';

import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { openDatabase } from '../../src/db/database.js';
import { listen } from '../../src/db/notifications.js';
import { createLogger } from '../../src/log.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';

/** A TCP relay to PostgreSQL whose open connections can be made to go silent: nothing passes, nothing closes. */
function relay(target: URL): { server: Server; silence: () => void; ready: Promise<number> } {
  const open = new Set<Socket>();
  const silenced = new Set<Socket>();
  // Half-open allowed: a silenced connection answers not even a FIN, like a dropped path.
  const server = createServer({ allowHalfOpen: true }, (inbound) => {
    const outbound = connect(Number(target.port || 5432), target.hostname);
    open.add(inbound);
    inbound.on('data', (chunk) => silenced.has(inbound) || outbound.write(chunk));
    outbound.on('data', (chunk) => silenced.has(inbound) || inbound.write(chunk));
    inbound.on('error', () => {});
    outbound.on('error', () => {});
  });
  const ready = new Promise<number>((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as { port: number }).port)));
  return { server, silence: () => open.forEach((s) => silenced.add(s)), ready };
}

describe('the notification listener', () => {
  let database: TestDatabase;
  beforeAll(async () => {
    database = await createTestDatabase('');
  });
  afterAll(() => database.drop());

  it('takes a connection that went silent for lost, tells `missed`, and listens again', async () => {
    const target = new URL(database.url);
    const { server, silence, ready } = relay(target);
    const viaRelay = new URL(database.url);
    viaRelay.host = `127.0.0.1:${await ready}`;
    let missed = 0;
    const received: string[] = [];
    const channel = `tessera_test_${process.pid}`;
    const stop = await listen(viaRelay.href, { [channel]: (payload) => received.push(payload) }, () => (missed += 1), createLogger('silent'), { heartbeatMs: 100, timeoutMs: 300 });
    const db = openDatabase(database.url);
    try {
      expect(missed).toBe(1); // the first connection: anything sent before it is unknown
      silence();
      // Lost (missed once more), then listening again on a new connection (once more still).
      while (missed < 3) await new Promise((resolve) => setTimeout(resolve, 50));
      await sql`select pg_notify(${channel}, 'after the cut')`.execute(db);
      while (received.length === 0) await new Promise((resolve) => setTimeout(resolve, 50));
      expect(received).toEqual(['after the cut']);
    } finally {
      await db.destroy();
      await stop();
      server.close();
    }
  });

  it('stops without waiting on a connection that went silent', async () => {
    const { server, silence, ready } = relay(new URL(database.url));
    const viaRelay = new URL(database.url);
    viaRelay.host = `127.0.0.1:${await ready}`;
    const stop = await listen(viaRelay.href, { tessera_test_quiet: () => {} }, () => {}, createLogger('silent'), { heartbeatMs: 60_000, timeoutMs: 300 });
    silence();
    try {
      // Without a bound, stop() waits for an end the server never confirms: the test times out.
      await stop();
    } finally {
      server.close();
    }
  });
});
