/**
 * An immutable view of the signing keys at one moment. The kid is the RFC 7638 thumbprint; RS256
 * is the only algorithm.
 *
 * - `next`: published in the JWKS, not signing yet, so gateways learn it before it is used;
 * - `active`: exactly one; signs every new token;
 * - `retired`: published and accepted, no longer signing, until its last tokens have expired;
 * - `revoked`: a tombstone without key material: neither published nor accepted.
 */
import { createHash, createPublicKey, type KeyObject } from 'node:crypto';

import type { JWK } from 'jose';

import { KeystoreError, SIGNING_ALG, type KeyFile, type KeyState } from './key-file.js';

export { KeystoreError, SIGNING_ALG, type KeyState };

export interface SigningKey {
  readonly kid: string;
  readonly state: KeyState;
  readonly createdAt: number;
  readonly activateAfter: number | null;
  readonly activatedAt: number | null;
  readonly retiredAt: number | null;
  readonly revokedAt: number | null;
  /** Private JWK with kid, alg and use set; only the signer sees it. Absent once revoked. */
  readonly privateJwk?: JWK;
  readonly publicJwk?: JWK;
  /** The public key, parsed once, for verifying tokens this key signed. */
  readonly verificationKey?: KeyObject;
}

export function toSigningKey(file: KeyFile): SigningKey {
  const common = {
    kid: file.kid,
    state: file.state,
    createdAt: file.created_at,
    activateAfter: file.activate_after,
    activatedAt: file.activated_at,
    retiredAt: file.retired_at,
    revokedAt: file.revoked_at,
  };
  if (file.state === 'revoked' || !file.private_jwk) return common;
  const meta = { kid: file.kid, alg: SIGNING_ALG, use: 'sig' };
  const { kty, n, e } = file.private_jwk;
  return {
    ...common,
    privateJwk: { ...file.private_jwk, ...meta },
    publicJwk: { kty, n, e, ...meta },
    verificationKey: createPublicKey({ key: { kty: 'RSA', n, e }, format: 'jwk' }),
  };
}

export class Keystore {
  readonly #byKid: ReadonlyMap<string, SigningKey>;
  readonly #active: SigningKey;
  /** Serialized once per snapshot: the JWKS endpoint serves these bytes and their ETag. */
  readonly jwksBody: string;
  readonly jwksEtag: string;

  constructor(private readonly keys: readonly SigningKey[]) {
    const active = keys.filter((k) => k.state === 'active');
    if (active.length !== 1 || !active[0]!.privateJwk) {
      throw new KeystoreError('ERR_NO_ACTIVE_KEY', `exactly one active signing key is required, found ${active.length}`);
    }
    this.#active = active[0]!;
    this.#byKid = new Map(keys.filter((k) => k.verificationKey).map((k) => [k.kid, k]));
    this.jwksBody = JSON.stringify({ keys: keys.filter((k) => k.publicJwk).map((k) => k.publicJwk) });
    this.jwksEtag = `"${createHash('sha256').update(this.jwksBody).digest('base64url')}"`;
  }

  /** The one key that signs. */
  get active(): SigningKey {
    return this.#active;
  }

  /** The public key of a kid whose tokens are accepted (next, active or retired), or undefined. */
  verificationKey(kid: string): KeyObject | undefined {
    return this.#byKid.get(kid)?.verificationKey;
  }

  /** Every key, tombstones included, for operators: never the private members. */
  list(): readonly SigningKey[] {
    return this.keys;
  }

  /** The public JWK Set (RFC 7517) gateways verify with. */
  publicJwks(): { keys: JWK[] } {
    return JSON.parse(this.jwksBody) as { keys: JWK[] };
  }

  /** The signer's private JWK Set: the active key only. */
  signingJwks(): { keys: JWK[] } {
    return { keys: [this.#active.privateJwk!] };
  }
}
