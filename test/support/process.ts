/** Runs the built server and CLI as separate processes, the way a user does. */
import { spawn, type ChildProcess } from 'node:child_process';
import { execFile } from 'node:child_process';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

export interface RunningServer {
  readonly process: ChildProcess;
  readonly stdout: string[];
  readonly stderr: string[];
  /** Resolves with the exit code once the process has ended and all of its output has been read. */
  readonly exited: Promise<number | null>;
}

const START_TIMEOUT_MS = 30_000;

/**
 * Starts `node dist/src/main.cjs` (what `npm start` runs) and waits, at most 30 s, for its
 * "listening" line. `track` sees the process as soon as it is spawned, so a test's cleanup can
 * kill it even if it never listens.
 */
export function startServer(env: NodeJS.ProcessEnv, track: (server: RunningServer) => void = () => {}): Promise<RunningServer> {
  const child = spawn(process.execPath, ['dist/src/main.cjs'], { cwd: ROOT, env: { PATH: process.env.PATH, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const stdout: string[] = [];
  const stderr: string[] = [];
  // 'close', not 'exit': it comes once stdout and stderr are drained, so what a test reads of
  // them after `exited` is all the process wrote.
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  const server: RunningServer = { process: child, stdout, stderr, exited };
  track(server);
  child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk.toString()));
  return new Promise<RunningServer>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not listen within ${START_TIMEOUT_MS} ms: ${stderr.join('')}`)), START_TIMEOUT_MS);
    let buffered = '';
    child.stdout.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      for (const line of lines) {
        stdout.push(line);
        if (line.includes('"msg":"listening"')) {
          clearTimeout(timer);
          resolve(server);
        }
      }
    });
    // A last line without its newline (a process killed mid-write) is output too.
    child.stdout.once('end', () => {
      if (buffered !== '') stdout.push(buffered);
      buffered = '';
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code}: ${stderr.join('')}`));
    });
  });
}

/** Runs `node bin/tessera.js …` (what `npx tessera …` runs). */
export async function tessera(env: NodeJS.ProcessEnv, ...args: string[]): Promise<{ stdout: string; stderr: string }> {
  return promisify(execFile)(process.execPath, ['bin/tessera.js', ...args], { cwd: ROOT, env: { PATH: process.env.PATH, ...env } });
}
