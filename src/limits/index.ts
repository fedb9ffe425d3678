/**
 * Limits on abuse, applied wherever a client authenticates (token, introspection, revocation):
 *   backoff.ts     failed authentications, per source address and per client_id from an address
 *   token-rate.ts  tokens per minute, per client, at the token endpoint
 *   refusals.ts    refused requests in the audit log, aggregated
 *   shared.ts      on PostgreSQL, the counts shared by every instance
 * A refused request is answered 429 with Retry-After.
 *
 * Trade-off (README "Limits"): anyone can make a client_id fail, so its back-off counts the
 * failures of a client_id from one address (addressUnit): a guesser holds only itself, never the
 * workload calling from elsewhere. It is short (AUTH_BACKOFF_MAX_CLIENT, 60 s by default); the
 * back-off per address is long. On SQLite (one server) the state is in memory; on PostgreSQL it is
 * shared (shared.ts).
 */
import { createHash } from 'node:crypto';
import { isIPv6 } from 'node:net';

import type { AuditLog } from '../audit/audit-log.js';
import type { Clock } from '../clock.js';
import { dialectOf, type Config } from '../config.js';
import type { Db } from '../db/database.js';
import { notify, type Handlers } from '../db/notifications.js';
import type { Logger } from '../log.js';
import { Backoff } from './backoff.js';
import { Refusals, type RefusalKey } from './refusals.js';
import { SharedLimitState } from './shared.js';
import { TokenRate } from './token-rate.js';

export class Throttled extends Error {
  constructor(
    /** Whole seconds the caller should wait. */
    readonly retryAfter: number,
    readonly key: RefusalKey,
  ) {
    super(`refused by a limit (${key.reason}); retry after ${retryAfter} s`);
    this.name = 'Throttled';
  }
}

const MAX_KEYS = 100_000;
const LOCK_CHANNEL = 'tessera_limit_locked';
const RECOUNT_BATCH = 500;
/** What keyOf makes: a SHA-256 digest, base64url. */
const DIGEST = /^[A-Za-z0-9_-]{43}$/;
const MAX_ANNOUNCED = 10_000;

type BackoffKind = 'client' | 'address';

/** Where shared state lives, on PostgreSQL. */
export interface SharedLimits {
  readonly state: SharedLimitState;
  readonly db: Db;
  readonly log: Logger;
}

/** The server's limits: in memory on SQLite (one server), shared through the database on PostgreSQL. */
export function serverLimits(config: Pick<Config, 'limits' | 'databaseUrl'>, db: Db, clock: Clock, auditLog: AuditLog, log: Logger): Limits {
  const shared = dialectOf(config.databaseUrl) === 'postgres' ? { state: new SharedLimitState(db), db, log } : undefined;
  return new Limits(config.limits, clock, auditLog, shared);
}

/**
 * Back-off keys are digests of what was presented: a client_id may be anything a caller typed, a
 * secret pasted into the wrong field included, and the shared table and the notifications between
 * instances must hold neither it nor an unbounded length.
 */
const keyOf = (value: string): string => createHash('sha256').update(value).digest('base64url');

const MAPPED = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i;

/**
 * What the address back-offs count as one address: an IPv4 address (also when written as IPv6, as
 * a dual-stack socket shows it), or an IPv6 address's first `ipv6Prefix` bits. At 128 (the
 * default) every IPv6 address is its own; at 64, a host given a whole /64, as home and many
 * hosting networks are, cannot pick a fresh address for every guess, but hosts sharing a cloud
 * subnet's /64 also share their lock-outs (README "Limits").
 */
export function addressUnit(address: string, ipv6Prefix: number): string {
  // A dual-stack socket's every IPv4 peer (HOST=::), on every request: the short way.
  const mapped = MAPPED.exec(address);
  if (mapped) return mapped[1]!;
  const bare = address.replace(/%.*$/, '').toLowerCase();
  if (!isIPv6(bare)) return address;
  const groups = (text: string): number[] =>
    text === '' ? [] : text.split(':').flatMap((part) => (part.includes('.') ? ipv4Groups(part) : [Number.parseInt(part, 16)]));
  const [head = '', tail] = bare.split('::');
  const front = groups(head);
  const back = tail === undefined ? [] : groups(tail);
  const all = [...front, ...new Array<number>(8 - front.length - back.length).fill(0), ...back];
  if (all.slice(0, 5).every((g) => g === 0) && all[5] === 0xffff) {
    return [all[6]! >> 8, all[6]! & 0xff, all[7]! >> 8, all[7]! & 0xff].join('.');
  }
  const masked = all.map((group, i) => group & (0xffff << (16 - Math.max(0, Math.min(16, ipv6Prefix - 16 * i)))) & 0xffff);
  const text = masked.map((g) => g.toString(16)).join(':');
  return ipv6Prefix === 128 ? text : `${text}/${ipv6Prefix}`;
}

function ipv4Groups(dotted: string): number[] {
  const [a = 0, b = 0, c = 0, d = 0] = dotted.split('.').map(Number);
  return [(a << 8) | b, (c << 8) | d];
}

export class Limits {
  readonly #byClient: Backoff;
  readonly #byAddress: Backoff;
  readonly #tokenRate: TokenRate;
  readonly refusals: Refusals;
  /** Announced keys waiting to be read again, by their name in the shared table (`kind:key`). */
  readonly #announced = new Map<string, { readonly kind: BackoffKind; readonly key: string }>();
  #recounting: Promise<void> | undefined;

  constructor(
    private readonly config: Config['limits'],
    private readonly clock: Clock,
    auditLog: AuditLog,
    private readonly shared?: SharedLimits,
  ) {
    const window = { windowSeconds: config.authFailureWindow, maxKeys: MAX_KEYS };
    this.#byClient = new Backoff({ ...window, threshold: config.authFailuresPerClient, maxSeconds: config.authBackoffMaxClient }, clock);
    this.#byAddress = new Backoff({ ...window, threshold: config.authFailuresPerAddress, maxSeconds: config.authBackoffMaxAddress }, clock);
    this.#tokenRate = new TokenRate(clock, MAX_KEYS);
    this.refusals = new Refusals(auditLog, clock);
  }

  /** What the address back-offs count as one address (addressUnit). */
  addressUnit(remoteAddr: string): string {
    return addressUnit(remoteAddr, this.config.authIpv6Prefix);
  }

  /** Whole seconds the source address must still wait after failed authentications; 0: none. */
  addressWait(remoteAddr: string): number {
    return this.#byAddress.retryAfter(keyOf(this.addressUnit(remoteAddr)));
  }

  /** The same for a client_id presented from this address. */
  clientWait(clientId: string, remoteAddr: string): number {
    return this.#byClient.retryAfter(this.#clientKey(clientId, remoteAddr));
  }

  /** A failed guess: it counts towards both back-offs, here and, when shared, everywhere. */
  authFailed(clientId: string, remoteAddr: string): void {
    const [client, address] = [this.#clientKey(clientId, remoteAddr), keyOf(this.addressUnit(remoteAddr))];
    this.#byClient.failed(client);
    this.#byAddress.failed(address);
    if (this.shared) {
      // Off the answer's path: the caller has already paid argon2, and this instance's own count applies at once.
      void this.#share('client', client);
      void this.#share('address', address);
    }
  }

  /** Refuses a client whose token rate is spent; `perMinute` null means the server default. */
  async takeToken(clientId: string, perMinute: number | null): Promise<void> {
    const limit = perMinute ?? this.config.tokenRateLimit;
    if (limit <= 0) return;
    const wait = this.shared ? await this.#sharedTake(clientId, limit) : this.#tokenRate.take(clientId, limit);
    if (wait > 0) throw new Throttled(wait, { kind: 'client_id', value: clientId, reason: 'token_rate_limited' });
  }

  /**
   * What the notification listener applies: lock-outs announced by other instances. Any role that
   * can connect to the database can NOTIFY, and a key is only a digest anyone can compute, so an
   * announcement is not believed: it names a key whose shared count (which only Tessera's role can
   * write) is read again, and the lock follows from that count as from this instance's own.
   */
  handlers(): Handlers {
    return {
      [LOCK_CHANNEL]: (payload) => {
        const { kind, key } = JSON.parse(payload) as { kind?: unknown; key?: unknown };
        if ((kind !== 'client' && kind !== 'address') || typeof key !== 'string' || !DIGEST.test(key)) throw new Error('not a lock-out');
        this.#recount(kind, key);
      },
    };
  }

  /**
   * Announced keys are read in batches, one query at a time: a flood of announcements (anyone can
   * send them) costs this instance one pool connection at most, and a bounded set of keys waiting.
   */
  #recount(kind: BackoffKind, key: string): void {
    if (!this.shared || this.#announced.size >= MAX_ANNOUNCED) return;
    this.#announced.set(`${kind}:${key}`, { kind, key });
    if (this.#recounting === undefined) this.#recounting = this.#drainAnnounced().finally(() => (this.#recounting = undefined));
  }

  async #drainAnnounced(): Promise<void> {
    const { state, log } = this.shared!;
    // Announcements that arrive in this turn of the event loop join the first read.
    await new Promise<void>((resolve) => setImmediate(resolve));
    while (this.#announced.size > 0) {
      const batch = new Map([...this.#announced].slice(0, RECOUNT_BATCH));
      for (const name of batch.keys()) this.#announced.delete(name);
      try {
        const counts = await state.failures([...batch.keys()], this.clock.now(), this.config.authFailureWindow * 1000);
        for (const [name, failures] of counts) {
          const { kind, key } = batch.get(name)!;
          this.#backoff(kind).observe(key, failures);
        }
      } catch (err) {
        log.warn({ err }, 'announced lock-outs not checked');
      }
    }
  }

  /** Drops shared failures older than the window, every minute; the returned function stops it. */
  startPruning(): () => void {
    const shared = this.shared;
    if (!shared) return () => {};
    const windowMs = this.config.authFailureWindow * 1000;
    const timer = setInterval(() => {
      shared.state.prune(this.clock.now(), windowMs).catch((err: unknown) => shared.log.warn({ err }, 'pruning shared limits failed'));
    }, 60_000).unref();
    return () => clearInterval(timer);
  }

  /** The client_id back-off's key: a client_id as presented from one address. */
  #clientKey(clientId: string, remoteAddr: string): string {
    return keyOf(JSON.stringify([clientId, this.addressUnit(remoteAddr)]));
  }

  #backoff(kind: BackoffKind): Backoff {
    return kind === 'client' ? this.#byClient : this.#byAddress;
  }

  async #share(kind: BackoffKind, key: string): Promise<void> {
    const { state, db, log } = this.shared!;
    const backoff = this.#backoff(kind);
    try {
      const before = backoff.retryAfter(key);
      const failures = await state.failed(`${kind}:${key}`, this.clock.now(), this.config.authFailureWindow * 1000);
      backoff.observe(key, failures);
      const wait = backoff.retryAfter(key);
      // `until` is for instances of earlier versions, which refuse an announcement without it.
      if (wait > before) await notify(db, LOCK_CHANNEL, JSON.stringify({ kind, key, until: this.clock.now() + wait * 1000 }), log);
    } catch (err) {
      log.warn({ err }, 'failed authentication not shared');
    }
  }

  async #sharedTake(clientId: string, perMinute: number): Promise<number> {
    try {
      return await this.shared!.state.takeToken(clientId, perMinute, this.clock.now());
    } catch (err) {
      // A limiter must not turn a database hiccup into refusals: this instance's own bucket decides.
      this.shared!.log.warn({ err }, 'shared token rate unavailable');
      return this.#tokenRate.take(clientId, perMinute);
    }
  }
}
