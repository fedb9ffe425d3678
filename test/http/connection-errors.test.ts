import { once } from 'node:events';
import { createServer } from 'node:http';
import { connect, type AddressInfo } from 'node:net';

import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';

import { startHarness, type Harness } from '../support/harness.js';

let h: Harness;
beforeAll(async () => {
  h = await startHarness({ LOG_LEVEL: 'debug' });
});
afterAll(() => h.close());

describe('a caller resetting its connection', () => {
  it('is logged as one JSON line at debug level, never as a stack koa prints to stderr', async () => {
    const printed = vi.spyOn(console, 'error').mockImplementation(() => {});
    const handle = h.app.callback();
    const server = createServer((req, res) => void handle(req, res)).listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const before = h.logLines.length;
      for (let i = 0; i < 3; i += 1) {
        const socket = connect((server.address() as AddressInfo).port, '127.0.0.1');
        await once(socket, 'connect');
        // Headers and part of the body, then a reset (RST) instead of the rest.
        socket.write('POST /oauth/token HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ngrant_type=client');
        await new Promise((resolve) => setTimeout(resolve, 50));
        socket.resetAndDestroy();
      }
      const reported = () => h.logLines.slice(before).filter((l) => l.msg === 'connection error');
      await vi.waitFor(() => expect(reported()).toHaveLength(3));
      expect(reported().map((l) => [l.level, (l.err as { code?: string }).code])).toEqual(Array(3).fill([20, 'ECONNRESET']));
      expect(printed).not.toHaveBeenCalled();
    } finally {
      printed.mockRestore();
      server.close();
    }
  });
});

describe('an answer that fails after the middleware', () => {
  it('is logged as an error, with its cause', () => {
    const before = h.logLines.length;
    h.app.emit('error', Object.assign(new Error('cannot serialise the body'), { code: 'ERR_SOMETHING' }));
    expect(h.logLines.slice(before)).toEqual([expect.objectContaining({ level: 50, msg: 'response failed', err: expect.objectContaining({ message: 'cannot serialise the body' }) })]);
  });
});
