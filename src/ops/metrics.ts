/**
 * Prometheus metrics (GET /metrics, text format 0.0.4), one registry per app instance.
 *
 * Counted where each answer is final: token requests by tessera's token-endpoint step
 * (countTokenRequests, wrapped around the audit step, so a token withheld because its audit row
 * failed counts as server_error), introspection and revocation calls by their endpoint. Everything
 * else is read when Prometheus scrapes (collect callbacks): argon2 pool, audit queue, verified-
 * credential cache, signing keys. Node's process metrics start with the first scrape, so an app
 * nobody scrapes (every test harness) pays nothing for them.
 *
 * No label carries a caller-supplied value: error codes come from a fixed list, and the optional
 * client_id label (METRICS_CLIENT_LABELS) names only clients that proved their secret.
 */
import Koa, { type Middleware } from 'koa';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

import type { AuditLog } from '../audit/audit-log.js';
import type { SecretHasher } from '../clients/secret.js';
import type { VerifiedCredentialCache } from '../clients/verified-credentials.js';
import { logConnectionErrors, requestContext } from '../http/request-context.js';
import { routes } from '../http/routes.js';
import type { KeyManager } from '../keys/key-manager.js';
import type { KeyState } from '../keys/keystore.js';
import type { Logger } from '../log.js';
import { tokenState } from '../token/request-state.js';

export const METRICS_PATH = '/metrics';

/** The error codes an answer can carry (RFC 6749 §5.2, RFC 7009, RFC 8707); anything else is `other`. */
const ERROR_CODES: ReadonlySet<string> = new Set([
  'invalid_request',
  'invalid_client',
  'invalid_grant',
  'unauthorized_client',
  'unsupported_grant_type',
  'invalid_scope',
  'invalid_target',
  'unsupported_token_type',
  'server_error',
  'temporarily_unavailable',
]);
const errorCode = (value: unknown): string => (typeof value === 'string' && ERROR_CODES.has(value) ? value : 'other');

const KEY_STATES: readonly KeyState[] = ['next', 'active', 'retired', 'revoked'];

export type TokenOutcome = 'issued' | 'failed' | 'refused';
export type IntrospectionResult = 'active' | 'inactive' | 'error' | 'refused';
export type RevocationResult = 'revoked' | 'unchanged' | 'error' | 'refused';

/** What a call to introspection or revocation came to, as counted. */
export interface CallOutcome<R extends string> {
  readonly result: R;
  /** The RFC error code, for `error` and `refused`. */
  readonly error?: string;
}

export interface MetricsOptions {
  /** Adds a client_id label (authenticated clients only) to tessera_token_requests_total. */
  readonly metricsClientLabels: boolean;
}

/** What the scrape-time gauges read; set once by createApp (watch). */
export interface MetricSources {
  readonly hasher: SecretHasher;
  readonly auditLog: AuditLog;
  readonly verified: VerifiedCredentialCache;
  readonly keys: KeyManager;
}

export class Metrics {
  readonly registry = new Registry();
  readonly clientLabels: boolean;
  #sources: MetricSources | undefined;
  #processMetrics = false;

  readonly #tokenRequests: Counter<'outcome' | 'error' | 'client_id'>;
  readonly #issuance: Histogram;
  readonly #introspections: Counter<'result' | 'error'>;
  readonly #revocations: Counter<'result' | 'error'>;
  readonly #auditCommit: Histogram;
  readonly #auditCommitFailures: Counter;

  constructor(options: MetricsOptions) {
    this.clientLabels = options.metricsClientLabels;
    const registers = [this.registry];
    const sources = () => this.#sources;

    this.#tokenRequests = new Counter({
      name: 'tessera_token_requests_total',
      help: 'Token requests by outcome (issued, failed, refused by a limit or overload) and RFC 6749 error code',
      labelNames: this.clientLabels ? ['outcome', 'error', 'client_id'] : ['outcome', 'error'],
      registers,
    });
    this.#issuance = new Histogram({
      name: 'tessera_token_issuance_seconds',
      help: 'Time to answer a token request that issued a token, audit commit included',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    });
    this.#introspections = new Counter({
      name: 'tessera_introspection_requests_total',
      help: 'Introspection calls by result (active, inactive, error, refused) and error code',
      labelNames: ['result', 'error'],
      registers,
    });
    this.#revocations = new Counter({
      name: 'tessera_revocation_requests_total',
      help: 'Revocation calls by result (revoked, unchanged, error, refused) and error code',
      labelNames: ['result', 'error'],
      registers,
    });
    // Read from the components at scrape time: a counter mirrors a running total, a gauge a level.
    const total = (name: string, help: string, read: (s: MetricSources) => number) =>
      new Counter({
        name,
        help,
        registers,
        collect() {
          const current = sources();
          this.reset();
          this.inc(current ? read(current) : 0);
        },
      });
    const level = (name: string, help: string, read: (s: MetricSources) => number) =>
      new Gauge({
        name,
        help,
        registers,
        collect() {
          const current = sources();
          this.set(current ? read(current) : 0);
        },
      });
    total('tessera_credential_cache_hits_total', 'Secret verifications answered by the verified-credential cache (no argon2)', (s) => s.verified.hits);
    total('tessera_credential_cache_misses_total', 'Secret verifications of an existing secret the verified-credential cache could not answer (argon2 ran)', (s) => s.verified.misses);
    level('tessera_credential_cache_entries', 'Verified secrets remembered', (s) => s.verified.size);
    level('tessera_argon2_queue_depth', 'argon2 operations waiting for a slot (beyond ARGON2_QUEUE: 503)', (s) => s.hasher.queued);
    level('tessera_argon2_in_flight', 'argon2 operations running (at most ARGON2_CONCURRENCY)', (s) => s.hasher.inFlight);
    level('tessera_audit_queue_depth', 'Audit rows waiting for the next group commit', (s) => s.auditLog.pending);
    this.#auditCommit = new Histogram({
      name: 'tessera_audit_commit_seconds',
      help: 'Duration of one audit group commit (one transaction, many rows)',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    });
    this.#auditCommitFailures = new Counter({
      name: 'tessera_audit_commit_failures_total',
      help: 'Audit group commits that failed (their requests were answered server_error)',
      registers,
    });
    new Gauge({
      name: 'tessera_signing_keys',
      help: 'Signing keys in KEYS_DIR by state',
      labelNames: ['state'],
      registers,
      collect() {
        const keys = sources()?.keys.current.list() ?? [];
        for (const state of KEY_STATES) this.set({ state }, keys.filter((k) => k.state === state).length);
      },
    });
  }

  /** Connects the scrape-time gauges to the app's components (createApp). */
  watch(sources: MetricSources): void {
    this.#sources = sources;
    sources.auditLog.onCommit((seconds, ok) => {
      if (ok) this.#auditCommit.observe(seconds);
      else this.#auditCommitFailures.inc();
    });
  }

  tokenRequest(outcome: TokenOutcome, error: string | undefined, clientId: string | undefined, seconds: number): void {
    const labels: Partial<Record<'outcome' | 'error' | 'client_id', string>> = { outcome };
    if (outcome !== 'issued') labels.error = errorCode(error);
    if (this.clientLabels) labels.client_id = clientId ?? '';
    this.#tokenRequests.inc(labels);
    if (outcome === 'issued') this.#issuance.observe(seconds);
  }

  introspection(outcome: CallOutcome<IntrospectionResult>): void {
    this.#introspections.inc(callLabels(outcome));
  }

  revocation(outcome: CallOutcome<RevocationResult>): void {
    this.#revocations.inc(callLabels(outcome));
  }

  /** The exposition: content type and text. */
  async render(): Promise<{ contentType: string; body: string }> {
    if (!this.#processMetrics) {
      this.#processMetrics = true;
      collectDefaultMetrics({ register: this.registry });
    }
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}

const callLabels = ({ result, error }: CallOutcome<string>): Partial<Record<'result' | 'error', string>> =>
  error === undefined ? { result } : { result, error: errorCode(error) };

/**
 * The token endpoint's counting step, outside the audit step: every answer is counted once, as the
 * caller gets it. 429 (a limit) and 503 (argon2 overload) are `refused`; an exception that escapes
 * counts as server_error and goes on to the last-resort handler.
 */
export function countTokenRequests(metrics: Metrics): Middleware {
  return async function countTokenRequests(ctx, next) {
    const started = performance.now();
    let outcome: TokenOutcome = 'failed';
    let error: string | undefined = 'server_error';
    try {
      await next();
      const body = (ctx.body ?? {}) as { access_token?: unknown; error?: unknown };
      if (ctx.status === 200 && typeof body.access_token === 'string') {
        outcome = 'issued';
        error = undefined;
      } else {
        // A limit or a full argon2 queue: capacity, not a failure (other 503s are failures).
        outcome = tokenState(ctx).failure?.refusal ? 'refused' : 'failed';
        error = typeof body.error === 'string' ? body.error : 'server_error';
      }
    } finally {
      // Set only once the secret was verified: an id that was merely presented never becomes a label.
      const clientId = tokenState(ctx).client?.clientId;
      metrics.tokenRequest(outcome, error, clientId, (performance.now() - started) / 1000);
    }
  };
}

/** GET /metrics. */
export function serveMetrics(metrics: Metrics): Middleware {
  return async function serveMetrics(ctx) {
    const { contentType, body } = await metrics.render();
    ctx.set('Cache-Control', 'no-store');
    ctx.type = contentType;
    ctx.body = body;
  };
}

/** The app METRICS_PORT serves: /metrics and nothing else. */
export function createMetricsApp(metrics: Metrics, log: Logger): Koa {
  const app = new Koa();
  app.on('error', logConnectionErrors(log));
  app.use(requestContext(log, [METRICS_PATH]));
  app.use(routes({ [METRICS_PATH]: { GET: [serveMetrics(metrics)] } }));
  return app;
}
