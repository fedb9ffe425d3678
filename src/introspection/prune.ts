/** Keeps the revocation list small: an entry is useless once its token has expired anyway (with a margin, revocation.repository.ts). */
import { epochSeconds, type Clock } from '../clock.js';
import type { Db } from '../db/database.js';
import type { Logger } from '../log.js';
import { pruneRevokedTokens } from './revocation.repository.js';

const EVERY_MS = 10 * 60 * 1000;

/** Prunes now and then every ten minutes; the returned function stops it. */
export function startRevocationPruner(db: Db, clock: Clock, leeway: number, log: Logger): () => void {
  const prune = () =>
    pruneRevokedTokens(db, epochSeconds(clock), leeway).then(
      (count) => count > 0 && log.info({ pruned: count }, 'expired revocations pruned'),
      (err: unknown) => log.error({ err }, 'pruning revocations failed'),
    );
  void prune();
  const timer = setInterval(() => void prune(), EVERY_MS).unref();
  return () => clearInterval(timer);
}
