/**
 * Client secrets: generated here, shown once, stored only as argon2id hashes.
 *
 * Format `tsec_<id>_<random>`: the `tsec_` prefix lets secret scanners spot a leak, and the public
 * id names the one stored hash to check, so every authentication costs exactly one argon2 verify
 * whatever the client holds (no timing difference between one, two or no secrets).
 */
import { randomBytes } from 'node:crypto';

import argon2 from 'argon2';

import type { Argon2Params } from '../config.js';
import { WorkPool } from './work-pool.js';

/** Argon2 1.3 (0x13), the version every current library writes. */
const ARGON2_VERSION = 19;

const SECRET_FORMAT = /^tsec_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;

export interface GeneratedSecret {
  readonly id: string;
  /** The plaintext: returned to the operator once, never stored or logged. */
  readonly value: string;
}

export function generateSecret(): GeneratedSecret {
  const id = randomBytes(8).toString('hex');
  return { id, value: `tsec_${id}_${randomBytes(32).toString('base64url')}` };
}

/** The public secret id embedded in a presented secret, or undefined if it is not one of ours. */
export function secretIdOf(presented: string): string | undefined {
  return SECRET_FORMAT.exec(presented)?.[1];
}

/** Bounds on concurrent argon2 work (see work-pool.ts). */
export interface Argon2Limits {
  readonly concurrency: number;
  readonly queue: number;
}

/** argon2id hashing and verification, all through one bounded pool; may throw Overloaded. */
export class SecretHasher {
  /** A hash of random bytes: verifying against it costs what a real verify costs, and never matches. */
  readonly #decoy: Promise<string>;
  readonly #pool: WorkPool;

  /** `limits`: the configured ones (config.ts argon2Limits); tests and the bench pass their own. */
  constructor(
    private readonly params: Argon2Params,
    limits: Argon2Limits,
  ) {
    this.#pool = new WorkPool(limits.concurrency, limits.queue);
    this.#decoy = argon2.hash(randomBytes(32).toString('base64url'), { type: argon2.argon2id, ...params });
  }

  hash(plaintext: string): Promise<string> {
    return this.#pool.run('held', () => argon2.hash(plaintext, { type: argon2.argon2id, ...this.params }));
  }

  /** Constant-time in the secret (argon2 compares digests in constant time). */
  verify(hash: string, presented: string): Promise<boolean> {
    return this.#pool.run('held', () => argon2.verify(hash, presented).catch(() => false));
  }

  /** Pays the full cost of a verify for a client or secret that does not exist. */
  async verifyDecoy(presented: string): Promise<false> {
    const decoy = await this.#decoy;
    await this.#pool.run('other', () => argon2.verify(decoy, presented).catch(() => false));
    return false;
  }

  /**
   * True when a stored hash is weaker than the configured parameters: an older argon2 version,
   * another variant, or less memory or fewer passes and more of neither. Only weaker: instances
   * configured differently during a change of parameters would otherwise re-hash every secret back
   * and forth, each time emptying every instance's client cache, and the older ones would downgrade
   * hashes. Two settings that each trade memory for passes (OWASP lists several) keep each other's.
   */
  needsRehash(hash: string): boolean {
    const match = /^\$argon2id\$v=(\d+)\$([a-z0-9=,]+)\$/.exec(hash);
    if (!match) return true;
    const params = Object.fromEntries(match[2]!.split(',').map((pair) => pair.split('=') as [string, string]));
    const [m, t] = [Number(params.m), Number(params.t)];
    if (Number(match[1]) < ARGON2_VERSION || !Number.isFinite(m) || !Number.isFinite(t)) return true;
    return m <= this.params.memoryCost && t <= this.params.timeCost && (m < this.params.memoryCost || t < this.params.timeCost);
  }

  /** argon2 work waiting for a slot. */
  get queued(): number {
    return this.#pool.queued;
  }

  /** argon2 work running now. */
  get inFlight(): number {
    return this.#pool.active;
  }
}
