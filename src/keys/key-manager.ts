/**
 * The life of the signing keys in KEYS_DIR, shared by every process that uses the directory
 * (server instances, the CLI). All changes happen under the directory's lock file; each process
 * re-reads the directory on a short interval, so a change made anywhere reaches every server
 * without a restart.
 *
 *   rotate  → a `next` key, published at once, activated only after `JWKS_MAX_AGE` plus one reload
 *             interval, so every gateway cache and every instance has it before it signs;
 *             then the previous active key is `retired`;
 *   retire  → kept (published, accepted) until the longest token it can have signed has expired,
 *             then its file is deleted;
 *   revoke  → emergency: a tombstone replaces the key at once (gone from the JWKS, its tokens
 *             inactive), and if it was signing, a next key is promoted, or a new one made, at once.
 */
import { chmod, mkdir, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';

import { auditEvent, type AuditLog } from '../audit/audit-log.js';
import { epochSeconds, type Clock } from '../clock.js';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import { KeystoreError, TMP_SUFFIX, generateKeyFile, readKeyFile, removeKeyFile, writeKeyFile, type KeyFile } from './key-file.js';
import { Keystore, toSigningKey, type SigningKey } from './keystore.js';
import { withKeyLock } from './lock.js';

export interface KeyPolicy {
  readonly dir: string;
  /** RSA modulus length for new keys. */
  readonly modulusLength: number;
  /** Seconds gateways may cache the JWKS. */
  readonly jwksMaxAge: number;
  /** Seconds between re-reads of the directory. */
  readonly reloadInterval: number;
  /** Seconds a retired key stays published: the longest token lifetime, the clock leeway and one reload interval. */
  readonly retention: number;
  /** Days between automatic rotations; 0 turns them off. */
  readonly rotationDays: number;
  readonly clock: Clock;
}

export type KeyEventType = 'key.created' | 'key.activated' | 'key.retired' | 'key.removed' | 'key.revoked';

/** Where key events go: the audit log, with who caused them. */
export type KeyEventSink = (type: KeyEventType, kid: string, details: Record<string, unknown>) => Promise<void>;

export interface RotationResult {
  readonly key: SigningKey;
  /** True when the key signs from now on (`--now`); false while it waits to be published long enough. */
  readonly active: boolean;
  /** True when a rotation was already pending and this call created nothing. */
  readonly pending: boolean;
}

async function readDirectory(dir: string): Promise<KeyFile[]> {
  const names = (await readdir(dir)).filter((n) => n.endsWith('.json')).sort();
  return Promise.all(names.map((name) => readKeyFile(join(dir, name))));
}

/** The keys of a directory that must already hold some (the CLI's, which must not create any). */
async function existingKeys(dir: string): Promise<KeyFile[]> {
  const absent = (err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? [] : Promise.reject(err));
  const files = await readDirectory(dir).catch(absent);
  if (files.length === 0) {
    throw new KeystoreError('ERR_KEYS_DIR', `no signing keys in ${dir}: is KEYS_DIR the server's? (a server creates its first key when it starts)`);
  }
  return files;
}

/** The keys as they are on disk, changing nothing: no lock, no transition (`keys list`). */
export async function listKeys(dir: string): Promise<readonly SigningKey[]> {
  return (await existingKeys(dir)).map(toSigningKey);
}

export class KeyManager {
  #current: Keystore;
  #fingerprint: string;
  readonly #listeners: ((keystore: Keystore) => void)[] = [];
  #reloadsStarted = 0;
  #newestApplied = 0;

  private constructor(
    private readonly policy: KeyPolicy,
    private readonly record: KeyEventSink,
    private readonly log: Logger | undefined,
    files: KeyFile[],
  ) {
    this.#current = new Keystore(files.map(toSigningKey));
    this.#fingerprint = fingerprint(files);
  }

  /**
   * Opens the directory: creates it (0700) and a first active key when it holds none, then applies
   * any transition that is due. A key file that cannot be trusted stops here with its name.
   * `existing`: the directory must already hold keys (the CLI: a wrong KEYS_DIR must not get a key
   * of its own and be reported as if it were the server's). Such a caller applies no transition
   * either: servers do, each under its own configuration, which a CLI run need not share.
   */
  static async open(policy: KeyPolicy, record: KeyEventSink, log?: Logger, { existing = false } = {}): Promise<KeyManager> {
    if (existing) await existingKeys(policy.dir);
    await mkdir(policy.dir, { recursive: true, mode: 0o700 });
    if (((await stat(policy.dir)).mode & 0o077) !== 0) {
      await chmod(policy.dir, 0o700).catch((cause: unknown) => {
        throw new KeystoreError('ERR_KEYS_DIR', `keys directory ${policy.dir} is accessible by other users and cannot be restricted to 0700`, { cause });
      });
    }
    const files = await withKeyLock(policy.dir, async () => {
      if (!existing) await advance(policy, record, 'system');
      return readDirectory(policy.dir);
    });
    return new KeyManager(policy, record, log, files);
  }

  get current(): Keystore {
    return this.#current;
  }

  /** Called with each new snapshot, after the directory changed. */
  onChange(listener: (keystore: Keystore) => void): void {
    this.#listeners.push(listener);
  }

  /**
   * Re-reads the directory; a corrupt file keeps the last good snapshot and is reported. So does a
   * snapshot a listener cannot take (the engine, say): the JWKS, introspection and the signer then
   * stay on one set of keys, and the next reload tries again.
   */
  async reload(): Promise<void> {
    const started = ++this.#reloadsStarted;
    const files = await readDirectory(this.policy.dir);
    // A reload that began later read the directory later: one that began earlier but finished
    // after it (a scheduled tick overtaken by an operator's revocation) must not undo it.
    if (started < this.#newestApplied) return;
    this.#newestApplied = started;
    const next = fingerprint(files);
    if (next === this.#fingerprint) return;
    const keystore = new Keystore(files.map(toSigningKey));
    for (const listener of this.#listeners) listener(keystore);
    this.#current = keystore;
    this.#fingerprint = next;
  }

  /** Applies due transitions (activation, removal, automatic rotation), then reloads. */
  async tick(actor = 'scheduler'): Promise<void> {
    await withKeyLock(this.policy.dir, () => advance(this.policy, this.record, actor));
    await this.reload();
  }

  async rotate(options: { now: boolean; actor: string }): Promise<RotationResult> {
    const result = await withKeyLock(this.policy.dir, async () => {
      const { clock, dir } = this.policy;
      const files = await readDirectory(dir);
      let next = files.find((f) => f.state === 'next');
      const pending = next !== undefined;
      if (!next) {
        next = await generateKeyFile(this.policy.modulusLength, clock, 'next', publicationDelay(this.policy));
        await writeKeyFile(dir, next);
        await this.record('key.created', next.kid, { actor: options.actor, state: 'next', activate_after: next.activate_after });
      }
      if (options.now) {
        next = await promote(this.policy, this.record, files, next, epochSeconds(clock), options.actor);
      }
      return { file: next, pending };
    });
    await this.reload();
    return { key: toSigningKey(result.file), active: result.file.state === 'active', pending: result.pending };
  }

  async revoke(kid: string, actor: string): Promise<SigningKey> {
    const revoked = await withKeyLock(this.policy.dir, async () => {
      const { clock, dir } = this.policy;
      const now = epochSeconds(clock);
      const files = await readDirectory(dir);
      const target = files.find((f) => f.kid === kid && f.state !== 'revoked');
      if (!target) throw new KeystoreError('ERR_UNKNOWN_KEY', `no usable key ${kid}`);

      const tombstone: KeyFile = { ...target, state: 'revoked', revoked_at: now, private_jwk: undefined };
      await writeKeyFile(dir, tombstone);
      await this.record('key.revoked', kid, { actor, was: target.state });

      if (target.state === 'active') {
        // Emergency: the replacement signs at once, even if it was not yet published long enough.
        const standby = files.find((f) => f.state === 'next') ?? (await newKey(this.policy, this.record, actor));
        await promote(this.policy, this.record, [], standby, now, actor);
      }
      return tombstone;
    });
    await this.reload();
    return toSigningKey(revoked);
  }

  /**
   * Ticks every reload interval until the returned function is called; it resolves once a tick
   * in progress has finished, so a process never exits holding the directory's lock.
   */
  start(): () => Promise<void> {
    let ticking: Promise<void> = Promise.resolve();
    const timer = setInterval(() => {
      ticking = ticking.then(() =>
        this.tick().catch((err: unknown) => this.log?.error({ err }, 'signing keys not refreshed; keeping the last good set')),
      );
    }, this.policy.reloadInterval * 1000);
    timer.unref();
    return () => {
      clearInterval(timer);
      return ticking;
    };
  }
}

async function newKey(policy: KeyPolicy, record: KeyEventSink, actor: string): Promise<KeyFile> {
  const file = await generateKeyFile(policy.modulusLength, policy.clock, 'next', 0);
  await writeKeyFile(policy.dir, file);
  await record('key.created', file.kid, { actor, state: 'next', activate_after: file.activate_after });
  return file;
}

/** Seconds a `next` key waits: every gateway cache and every instance must have it before it signs. */
const publicationDelay = (policy: KeyPolicy): number => policy.jwksMaxAge + policy.reloadInterval;

/**
 * A key retired here is kept for this process's retention, and for the retention of whichever
 * process retired it (recorded in its file): instances in the middle of a configuration change,
 * or a CLI run without the server's environment, never delete a key that another one still needs.
 */
const removable = (policy: KeyPolicy, file: KeyFile, now: number): boolean =>
  Math.max(file.remove_after ?? 0, (file.retired_at ?? 0) + policy.retention) <= now;

/** The same for activation: the longer of the recorded wait and this process's own. */
const activatable = (policy: KeyPolicy, file: KeyFile, now: number): boolean =>
  Math.max(file.activate_after ?? 0, file.created_at + publicationDelay(policy)) <= now;

const retired = (policy: KeyPolicy, file: KeyFile, now: number): KeyFile => ({ ...file, state: 'retired', retired_at: now, remove_after: now + policy.retention });

/** `next` becomes `active`; whatever was active becomes `retired`. Runs under the lock. */
async function promote(policy: KeyPolicy, record: KeyEventSink, files: KeyFile[], next: KeyFile, now: number, actor: string): Promise<KeyFile> {
  for (const old of files.filter((f) => f.state === 'active' && f.kid !== next.kid)) {
    await writeKeyFile(policy.dir, retired(policy, old, now));
    await record('key.retired', old.kid, { actor });
  }
  const promoted: KeyFile = { ...next, state: 'active', activated_at: now, activate_after: null };
  await writeKeyFile(policy.dir, promoted);
  await record('key.activated', promoted.kid, { actor });
  return promoted;
}

/** Every transition that is due now. Runs under the lock; safe to run from any process, any time. */
async function advance(policy: KeyPolicy, record: KeyEventSink, actor: string): Promise<void> {
  const now = epochSeconds(policy.clock);
  // Key files are written only under the lock, which this process holds: a temporary file seen now
  // was left by a write that crashed, and may hold a private key that was never used.
  for (const name of (await readdir(policy.dir)).filter((n) => n.endsWith(TMP_SUFFIX))) await rm(join(policy.dir, name), { force: true });
  let files = await readDirectory(policy.dir);
  const usable = () => files.filter((f) => f.state === 'active' || f.state === 'next');

  // Never expected (changes happen under the lock), but if the directory shows two active keys,
  // keep the most recently activated one signing rather than refuse to serve.
  const actives = files.filter((f) => f.state === 'active').sort((a, b) => (b.activated_at ?? 0) - (a.activated_at ?? 0));
  for (const extra of actives.slice(1)) {
    await writeKeyFile(policy.dir, retired(policy, extra, now));
    await record('key.retired', extra.kid, { actor, reason: 'more than one active key' });
  }
  if (actives.length > 1) files = await readDirectory(policy.dir);

  if (usable().length === 0) {
    const first = await generateKeyFile(policy.modulusLength, policy.clock, 'active', null);
    await writeKeyFile(policy.dir, first);
    await record('key.created', first.kid, { actor, state: 'active' });
    files = await readDirectory(policy.dir);
  }

  const hasActive = files.some((f) => f.state === 'active');
  const due = files.filter((f) => f.state === 'next' && (!hasActive || activatable(policy, f, now))).sort((a, b) => a.created_at - b.created_at)[0];
  if (due) {
    await promote(policy, record, files, due, now, actor);
    files = await readDirectory(policy.dir);
  }

  for (const old of files.filter((f) => f.state === 'retired' && removable(policy, f, now))) {
    await removeKeyFile(policy.dir, old.kid);
    await record('key.removed', old.kid, { actor });
  }

  const active = files.find((f) => f.state === 'active');
  const rotationDue = policy.rotationDays > 0 && active && (active.activated_at ?? active.created_at) + policy.rotationDays * 86_400 <= now;
  if (rotationDue && !files.some((f) => f.state === 'next')) {
    const next = await generateKeyFile(policy.modulusLength, policy.clock, 'next', publicationDelay(policy));
    await writeKeyFile(policy.dir, next);
    await record('key.created', next.kid, { actor, state: 'next', activate_after: next.activate_after, reason: 'scheduled rotation' });
  }
}

function fingerprint(files: KeyFile[]): string {
  return JSON.stringify(files.map((f) => [f.kid, f.state, f.activated_at, f.retired_at, f.revoked_at]));
}

/** The key policy a configuration implies: retired keys outlive the longest token plus the leeway. */
export function keyPolicy(config: Config, clock: Clock): KeyPolicy {
  return {
    dir: config.keysDir,
    modulusLength: config.keySize,
    jwksMaxAge: config.jwksMaxAge,
    reloadInterval: config.keyReloadInterval,
    // Another instance may sign with a key for one reload interval after it is retired here.
    retention: config.accessTokenMaxTtl + config.clockLeeway + config.keyReloadInterval,
    rotationDays: config.keyRotationDays,
    clock,
  };
}

/** Key events as audit rows; the kid goes in the details. */
export const auditKeyEvents =
  (auditLog: AuditLog): KeyEventSink =>
  (type, kid, details) =>
    auditLog.record(auditEvent({ type, outcome: 'success', details: { kid, ...details } }));
