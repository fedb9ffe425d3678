/**
 * The machine's raw RS256 signing rate for an RFC 9068 payload, on every core (worker threads):
 * the ceiling a token endpoint could reach if it did nothing but sign.
 */
import { generateKeyPairSync, randomUUID, sign } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';

const encode = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');

function signFor(ms: number): number {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const header = encode({ alg: 'RS256', typ: 'at+jwt', kid: 'bench' });
  const deadline = performance.now() + ms;
  let count = 0;
  while (performance.now() < deadline) {
    const now = Math.floor(Date.now() / 1000);
    const payload = encode({ iss: 'https://issuer.example', sub: 'c', client_id: 'c', aud: 'https://api.example.com', iat: now, exp: now + 3600, jti: randomUUID(), scope: 'read:data' });
    sign('sha256', Buffer.from(`${header}.${payload}`), privateKey);
    count += 1;
  }
  return count;
}

if (!isMainThread) parentPort!.postMessage(signFor((workerData as { ms: number }).ms));

/** Signatures per second with one worker per core, over `seconds`. */
export async function rawSigningRate(seconds: number): Promise<{ perSecond: number; threads: number }> {
  const threads = availableParallelism();
  const counts = await Promise.all(
    Array.from(
      { length: threads },
      () =>
        new Promise<number>((resolve, reject) => {
          const worker = new Worker(new URL(import.meta.url), { workerData: { ms: seconds * 1000 } });
          worker.once('message', resolve);
          worker.once('error', reject);
        }),
    ),
  );
  return { perSecond: Math.round(counts.reduce((a, b) => a + b, 0) / seconds), threads };
}
