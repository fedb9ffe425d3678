/**
 * Property-based fuzzing (fast-check) of every endpoint of the in-process app: random and hostile
 * form bodies, JSON bodies, content types, Authorization headers, paths, query strings, methods,
 * chunked and Content-Length framing.
 *
 * For every request:
 *   - never a 5xx, never a request left without an answer, never an error-level log line
 *     (the last-resort handler logs `unhandled error`, the token endpoint `token endpoint failed`);
 *   - /oauth/token, /oauth/introspect, /oauth/revoke: `Cache-Control: no-store`; success is 200 with
 *     the endpoint's body; every error is JSON `{error, error_description?}` with an RFC 6749 / 7009 /
 *     7662 / 8707 code and a status that fits the code (401 with a Basic challenge; 411/413 only for
 *     invalid_request; 429/503 only for temporarily_unavailable, with Retry-After);
 *   - /admin: every error is JSON `{error, error_description, field?}` with a status that fits the
 *     code, 401/403 with a Bearer challenge;
 *   - unknown paths are JSON 404 `not_found`, known paths with another method JSON 405 with `Allow`
 *     (an OPTIONS answered 200/204 is taken for a CORS preflight).
 * And:
 *   - a body refused (400/413/415) when sent with Content-Length is refused when sent chunked too;
 *   - after each run the server still issues a token to a valid client_credentials request (after
 *     Retry-After, where a back-off refuses it).
 * The harness's own check that no credential reached a log line or an audit row runs on close.
 *
 * A failure prints the request (body as a latin1 byte string), the answer, and fast-check's seed
 * and path. Replay one with FUZZ_SEED=<seed> FUZZ_PATH=<path>; FUZZ_RUNS=<n> multiplies every
 * property's runs; FUZZ_STATS=1 prints how the answers were spread.
 */
import fc from 'fast-check';
import type supertest from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { adminClientSettings } from '../../src/admin/bootstrap.js';
import { ISSUER, basic, mint, startHarness, type Harness } from '../support/harness.js';

const API = 'https://api.example.com';
const OTHER_API = 'https://other.example.com';

// argon2 runs on nearly every fuzzed request: its cost is not under test here.
const CHEAP_ARGON2 = { ARGON2_MEMORY_KIB: '8192', ARGON2_TIME_COST: '1' };
// Back-off and token rate limits off, so hostile input keeps reaching the deeper steps (policy,
// introspection, revocation) instead of being refused at the door. A second harness turns them on,
// set low so that a short run is refused often (the harness turns them off unless told otherwise).
const NO_LIMITS = { AUTH_FAILURES_PER_CLIENT: '1000000', AUTH_FAILURES_PER_ADDRESS: '1000000', TOKEN_RATE_LIMIT: '0' };
const LOW_LIMITS = { AUTH_FAILURES_PER_CLIENT: '2', AUTH_FAILURES_PER_ADDRESS: '8', TOKEN_RATE_LIMIT: '20' };

const RUNS_SCALE = Number(process.env.FUZZ_RUNS ?? '1') || 1;
const runs = (n: number) => Math.max(1, Math.round(n * RUNS_SCALE));
const replay = {
  ...(process.env.FUZZ_SEED ? { seed: Number(process.env.FUZZ_SEED) } : {}),
  ...(process.env.FUZZ_PATH ? { path: process.env.FUZZ_PATH } : {}),
};

const TOKEN_PATH = '/oauth/token';
const INTROSPECT_PATH = '/oauth/introspect';
const REVOKE_PATH = '/oauth/revoke';
const OAUTH_PATHS = [TOKEN_PATH, INTROSPECT_PATH, REVOKE_PATH];
const PUBLIC_PATHS = ['/.well-known/oauth-authorization-server', '/.well-known/openid-configuration', '/.well-known/jwks.json', '/admin/openapi.json'];

/** RFC 6749 §5.2, RFC 7009 §2.2.1, RFC 7662 §2.3, RFC 8707 §2: each code, and the statuses it is answered with. */
const OAUTH_ERRORS: Readonly<Record<string, readonly number[]>> = {
  // 411 and 413: the token endpoint refuses a body without Content-Length or over 16 KiB unread.
  invalid_request: [400, 411, 413],
  invalid_client: [401],
  invalid_grant: [400],
  unauthorized_client: [400],
  unsupported_grant_type: [400],
  invalid_scope: [400],
  invalid_target: [400],
  unsupported_token_type: [400],
  temporarily_unavailable: [429, 503],
};

/** The admin API's codes (admin-error.ts, authorize.ts, read-json.ts, clients.ts) and their statuses. */
const ADMIN_ERRORS: Readonly<Record<string, readonly number[]>> = {
  invalid_request: [400, 413],
  invalid_token: [401],
  insufficient_scope: [403],
  not_found: [404],
  conflict: [409],
  precondition_failed: [412],
  unsupported_media_type: [415],
  precondition_required: [428],
  temporarily_unavailable: [429, 503],
};

// ---------------------------------------------------------------------------------------------
// Requests and answers
// ---------------------------------------------------------------------------------------------

interface Req {
  /** A supertest method name (lowercase). */
  readonly method: string;
  readonly path: string;
  readonly headers: Readonly<Record<string, string>>;
  /** The body as a latin1 byte string (one character per byte), so invalid UTF-8 can be sent. */
  readonly body?: string | undefined;
  /** Sent in two chunks with Transfer-Encoding: chunked instead of Content-Length. */
  readonly chunked?: boolean | undefined;
}

interface Answer {
  readonly status: number;
  readonly headers: Readonly<Record<string, string | undefined>>;
  readonly raw: Buffer;
}

const clip = (s: string, n = 400) => (s.length > n ? `${s.slice(0, n)}… (${s.length} chars)` : s);

function show(req: Req, a?: Answer): string {
  const lines = [
    `request:  ${req.method.toUpperCase()} ${clip(req.path, 300)}`,
    `headers:  ${clip(JSON.stringify(req.headers), 600)}`,
    `body:     ${req.body === undefined ? '(none)' : `${req.body.length} bytes${req.chunked ? ', chunked' : ''} (latin1): ${clip(JSON.stringify(req.body), 600)}`}`,
  ];
  if (a) {
    lines.push(`answer:   ${a.status} ${JSON.stringify(a.headers)}`, `          ${clip(JSON.stringify(a.raw.toString('utf8')), 600)}`);
  }
  return lines.join('\n');
}

function rawBody(res: NodeJS.ReadableStream, done: (err: Error | null, body: Buffer) => void): void {
  const chunks: Buffer[] = [];
  res.on('data', (c: Buffer) => chunks.push(c));
  res.on('end', () => done(null, Buffer.concat(chunks)));
  res.on('error', (err: Error) => done(err, Buffer.alloc(0)));
}

async function send(h: Harness, req: Req): Promise<Answer> {
  const start = (h.request as unknown as Record<string, ((url: string) => supertest.Test) | undefined>)[req.method];
  if (!start) throw new Error(`supertest has no method ${req.method}`);
  const test = start(req.path)
    .timeout({ response: 15_000, deadline: 30_000 })
    .buffer(true)
    .parse(rawBody as never)
    // Sent as is: superagent would otherwise re-serialize a Buffer for form and JSON content types.
    .serialize(((data: unknown) => data) as never);
  for (const [name, value] of Object.entries(req.headers)) void test.set(name, value);
  if (req.body !== undefined && req.chunked) {
    // Explicit: Node's client frames a GET or DELETE body as chunked only when told to.
    void test.set('Transfer-Encoding', 'chunked');
    const bytes = Buffer.from(req.body, 'latin1');
    test.write(bytes.subarray(0, bytes.length >> 1));
    test.write(bytes.subarray(bytes.length >> 1));
  } else if (req.body !== undefined) {
    void test.send(Buffer.from(req.body, 'latin1'));
  }
  let res: supertest.Response;
  try {
    res = await test;
  } catch (err) {
    const { code, message } = err as { code?: string; message?: string };
    throw new Error(`no HTTP answer (${code ?? 'error'}: ${message ?? String(err)})\n${show(req)}`);
  }
  return { status: res.status, headers: res.headers, raw: Buffer.isBuffer(res.body) ? res.body : Buffer.alloc(0) };
}

// ---------------------------------------------------------------------------------------------
// What every answer must look like
// ---------------------------------------------------------------------------------------------

type Family = 'oauth' | 'admin' | 'public' | 'other';

/** The path the server sees: the client's URL parser drops tabs and newlines and trims spaces and controls. */
// eslint-disable-next-line no-control-regex
const pathOf = (path: string) => path.replace(/[\t\n\r]/g, '').replace(/^[\x00-\x20]+|[\x00-\x20]+$/g, '').split(/[?#]/)[0]!;

function familyOf(path: string): Family {
  const p = pathOf(path);
  if (OAUTH_PATHS.includes(p)) return 'oauth';
  if (PUBLIC_PATHS.includes(p)) return 'public';
  if (p === '/admin' || p.startsWith('/admin/')) return 'admin';
  return 'other';
}

function checkAnswer(req: Req, a: Answer): void {
  const fail = (why: string): never => {
    throw new Error(`${why}\n${show(req, a)}`);
  };
  const head = req.method === 'head';
  const json = (): Record<string, unknown> => {
    if (!/^application\/([\w.-]+\+)?json\b/i.test(a.headers['content-type'] ?? '')) fail('the answer is not application/json');
    let body: unknown;
    try {
      body = JSON.parse(a.raw.toString('utf8'));
    } catch {
      fail('the answer is not valid JSON');
    }
    if (typeof body !== 'object' || body === null || Array.isArray(body)) fail('the answer is not a JSON object');
    return body as Record<string, unknown>;
  };
  const onlyKeys = (body: Record<string, unknown>, keys: readonly string[]) => {
    const extra = Object.keys(body).filter((k) => !keys.includes(k));
    if (extra.length > 0) fail(`unexpected members in the error: ${extra.join(', ')}`);
  };

  if (req.method === 'options' && (a.status === 200 || a.status === 204)) {
    // A CORS preflight answer (the token endpoint's): no body to check.
    if (a.status === 204 && a.raw.length !== 0) fail('204 with a body');
    return;
  }
  if (a.status >= 500) {
    // 503 temporarily_unavailable is the documented answer to an argon2 queue overflow, which
    // cannot happen here: requests are sent one at a time.
    fail(`${a.status} answer`);
  }

  if (a.status === 404) {
    if (head) return;
    const body = json();
    if (body.error !== 'not_found' || typeof body.error_description !== 'string') fail('404 without {error: "not_found", error_description}');
    onlyKeys(body, ['error', 'error_description']);
    return;
  }
  if (a.status === 405) {
    if (!a.headers.allow) fail('405 without an Allow header');
    if (head) return;
    const body = json();
    if (body.error !== 'invalid_request' || typeof body.error_description !== 'string') fail('405 without {error: "invalid_request", error_description}');
    return;
  }

  const path = pathOf(req.path);
  switch (familyOf(req.path)) {
    case 'oauth': {
      if (a.headers['cache-control'] !== 'no-store') fail('an OAuth answer without Cache-Control: no-store');
      if (a.status === 200) {
        if (path === TOKEN_PATH) {
          const body = json();
          if (typeof body.access_token !== 'string' || body.token_type !== 'Bearer') fail('200 from the token endpoint without a Bearer access_token');
        } else if (path === INTROSPECT_PATH) {
          if (typeof json().active !== 'boolean') fail('200 from introspection without a boolean "active"');
        } else if (a.raw.length !== 0) {
          fail('200 from revocation with a body');
        }
        return;
      }
      const body = json();
      const statuses = typeof body.error === 'string' ? OAUTH_ERRORS[body.error] : undefined;
      if (!statuses) fail(`error ${JSON.stringify(body.error)} is not an RFC 6749/7009/7662/8707 code`);
      if (!statuses!.includes(a.status)) fail(`status ${a.status} does not fit error ${String(body.error)}`);
      if (body.error_description !== undefined && typeof body.error_description !== 'string') fail('error_description is not a string');
      onlyKeys(body, ['error', 'error_description', 'error_uri']);
      if (a.status === 401 && !/^Basic realm="/.test(a.headers['www-authenticate'] ?? '')) fail('401 without a Basic challenge');
      if ((a.status === 429 || a.status === 503) && !/^\d+$/.test(a.headers['retry-after'] ?? '')) fail(`${a.status} without Retry-After`);
      return;
    }
    case 'admin': {
      if ([200, 201].includes(a.status)) {
        if (!head) json();
        return;
      }
      if (a.status === 204) {
        if (a.raw.length !== 0) fail('204 with a body');
        return;
      }
      if (a.headers['cache-control'] !== 'no-store') fail('an admin answer without Cache-Control: no-store');
      if (head) return;
      const body = json();
      const statuses = typeof body.error === 'string' ? ADMIN_ERRORS[body.error] : undefined;
      if (!statuses) fail(`admin error ${JSON.stringify(body.error)} is not one the admin API answers with`);
      if (!statuses!.includes(a.status)) fail(`status ${a.status} does not fit admin error ${String(body.error)}`);
      if (typeof body.error_description !== 'string') fail('admin error without an error_description string');
      if (body.field !== undefined && typeof body.field !== 'string') fail('admin error with a non-string field');
      onlyKeys(body, ['error', 'error_description', 'field']);
      if ((a.status === 401 || a.status === 403) && !/^Bearer realm="/.test(a.headers['www-authenticate'] ?? '')) fail(`${a.status} without a Bearer challenge`);
      return;
    }
    case 'public':
      if (a.status === 304) return;
      if (a.status !== 200) fail(`status ${a.status} from a public document`);
      if (!head) json();
      return;
    case 'other':
      fail(`status ${a.status} for a path Tessera does not serve`);
  }
}

/** Sends one request and checks its answer and the log lines it caused. */
async function exchange(h: Harness, req: Req): Promise<Answer> {
  const logged = h.logLines.length;
  const a = await send(h, req);
  checkAnswer(req, a);
  const errors = h.logLines.slice(logged).filter((l) => typeof l.level === 'number' && l.level >= 50);
  if (errors.length > 0) throw new Error(`error logged: ${clip(JSON.stringify(errors), 1500)}\n${show(req, a)}`);
  return a;
}

// ---------------------------------------------------------------------------------------------
// Hostile input
// ---------------------------------------------------------------------------------------------

/** UTF-8 bytes of a JS string, as a latin1 byte string (a lone surrogate becomes EF BF BD). */
const bytesOf = (s: string) => Buffer.from(s, 'utf8').toString('latin1');
/** Percent-encodes every UTF-8 byte but the unreserved ones; never throws, unlike encodeURIComponent. */
const pct = (s: string) =>
  [...Buffer.from(s, 'utf8')].map((b) => (/[A-Za-z0-9\-._~]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, '0')}`)).join('');
const b64 = (bytes: string) => Buffer.from(bytes, 'latin1').toString('base64');

const HOSTILE_ESCAPES = ['%', '%z', '%zz', '%0', '%00', '%%', '%%32%35', '%ED%A0%80', '%ED%BF%BF', '%C0%AF', '%C0%80', '%FF', '%FE%FF', '%E2%82', '%F4%90%80%80', '%2B', '+', '%26', '%3D', '%0D%0A', '%u0041'];
/** Raw bytes that are not valid UTF-8, or are control characters. */
const RAW_BYTES = ['\x00', '\xff', '\xfe\xff', '\xed\xa0\x80', '\xc0\xaf', '\x80', '\xe2\x82', '\r\n', '\t', '\x7f'];

const loneSurrogate = fc.integer({ min: 0xd800, max: 0xdfff }).map((c) => String.fromCharCode(c));
const oddChar = fc.oneof(
  { weight: 4, arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }) },
  { weight: 1, arbitrary: loneSurrogate },
  { weight: 2, arbitrary: fc.constantFrom('%', '&', '=', '+', ';', ':', '/', '?', '#', ' ', '\0', '"', "'", '\\', '\u2028', '\ufeff', '\uffff', '😀', '\u0301') },
);
const shortText = fc.oneof(
  fc.string({ maxLength: 30 }),
  fc.string({ unit: oddChar, maxLength: 30 }),
  fc.string({ unit: 'binary-ascii', maxLength: 30 }),
  fc.string({ unit: 'grapheme', maxLength: 10 }),
);
/** Up to ~20 KiB of characters: more than the 16 KiB form limit once encoded. */
const longText = fc
  .tuple(fc.string({ unit: oddChar, minLength: 1, maxLength: 3 }), fc.integer({ min: 256, max: 20 * 1024 }))
  .map(([s, n]) => s.repeat(Math.ceil(n / s.length)).slice(0, n));
const text = fc.oneof({ weight: 6, arbitrary: shortText }, { weight: 1, arbitrary: longText }, { weight: 1, arbitrary: fc.constant('') });

const headerChar = fc
  .oneof({ weight: 12, arbitrary: fc.integer({ min: 0x20, max: 0x7e }) }, { weight: 1, arbitrary: fc.constant(0x09) }, { weight: 1, arbitrary: fc.integer({ min: 0x80, max: 0xff }) })
  .map((c) => String.fromCharCode(c));
/** Anything Node's HTTP client lets through as a header value (no CR/LF: those it refuses itself). */
const headerValue = fc.string({ unit: headerChar, maxLength: 200 });

const SCOPES = ['read:data', 'write:logs', 'admin:read', 'admin:write', 'openid', 'offline_access', '"', '\\', '*', 'read:data read:data'];
const scopeish = fc.array(fc.oneof(fc.constantFrom(...SCOPES), fc.string({ unit: oddChar, maxLength: 8 })), { maxLength: 4 }).map((a) => a.join(' '));
const uriish = fc.oneof(
  fc.constantFrom(
    API,
    OTHER_API,
    `${API}/`,
    `${ISSUER}/admin`,
    'https://evil.example.com',
    'https://a.example#frag',
    'urn:ietf:params:oauth:token-type:jwt',
    'javascript:alert(1)',
    'data:,x',
    'file:///etc/passwd',
    '//no-scheme.example',
    'api',
    '',
    '*',
    'http://[::1]',
    'https://exa mple.com',
    'https://xn--nxasmq6b.example',
    `https://a.example/${'x'.repeat(600)}`,
  ),
  fc.webUrl(),
  shortText,
);

/** Raw JSON text: nested values, numbers JSON.stringify cannot write, keys that matter and keys that bite. */
function jsonText(fieldNames: readonly string[]): fc.Arbitrary<string> {
  const number = fc.oneof(
    fc.constantFrom('0', '-0', '1e308', '-1e308', '1e309', '-1e309', '1e-400', '5e-324', '9007199254740993', '123456789012345678901234567890', '0.1', '1.5', '-1', '60', '86400', '31536001', '1E2', '0e0', '1.0'),
    fc.integer().map(String),
    fc.double({ noNaN: true, noDefaultInfinity: true }).map((d) => JSON.stringify(d)),
  );
  const string = fc.oneof(
    text.map((s) => JSON.stringify(s)),
    fc.constantFrom('"\\ud800"', '"\\udfff\\ud800"', '"\\u0000"', '"NaN"', '"Infinity"', '"-0"', '"1e308"', '"true"', '"null"', '""', '" "', '"*"', `"${API}"`, '"client_secret_post"', '"client_credentials"', '"admin:read admin:write"'),
    uriish.map((s) => JSON.stringify(s)),
  );
  const key = fc
    .oneof(
      { weight: 4, arbitrary: fc.constantFrom(...fieldNames) },
      { weight: 1, arbitrary: fc.constantFrom('__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', 'valueOf', '', ' client_name', 'CLIENT_NAME', 'created_at', 'client_secret') },
      { weight: 1, arbitrary: shortText },
    )
    .map((k) => JSON.stringify(k));
  const { value } = fc.letrec<{ value: string }>((tie) => ({
    value: fc.oneof(
      { depthSize: 'small', maxDepth: 5, withCrossShrink: true },
      number,
      string,
      fc.constantFrom('true', 'false', 'null'),
      fc.array(tie('value'), { maxLength: 5 }).map((a) => `[${a.join(',')}]`),
      fc.array(fc.tuple(key, tie('value')), { maxLength: 6 }).map((ps) => `{${ps.map(([k, v]) => `${k}:${v}`).join(',')}}`),
    ),
  }));
  return value;
}

const CLIENT_FIELDS = [
  'client_id',
  'client_name',
  'description',
  'scope',
  'default_scope',
  'audience',
  'default_audience',
  'introspection_audiences',
  'grant_types',
  'token_endpoint_auth_method',
  'access_token_ttl',
  'token_rate_limit',
  'enabled',
  'previous_secret_expires_in',
  'now',
];

/** Admin bodies: plausible client settings, random JSON, deep nesting, huge values, broken JSON. */
function adminBodies(): fc.Arbitrary<string | undefined> {
  const json = jsonText(CLIENT_FIELDS);
  const clientLike = fc
    .record(
      {
        client_id: fc.oneof(fc.stringMatching(/^[A-Za-z0-9._~-]{3,20}$/), shortText),
        client_name: fc.oneof(shortText, fc.constant('fuzzed')),
        description: fc.oneof(fc.constant(null), shortText),
        scope: scopeish,
        default_scope: scopeish,
        audience: fc.array(uriish, { maxLength: 3 }),
        default_audience: fc.oneof(fc.constant(null), uriish),
        introspection_audiences: fc.oneof(fc.constant(['*']), fc.array(fc.oneof(uriish, fc.constant('*')), { maxLength: 3 })),
        grant_types: fc.subarray(['client_credentials', 'password', '']),
        token_endpoint_auth_method: fc.constantFrom('client_secret_basic', 'client_secret_post', 'none', 'private_key_jwt', ''),
        access_token_ttl: fc.oneof(fc.constant(null), fc.integer({ min: -10, max: 100_000 }), fc.double()),
        enabled: fc.oneof(fc.boolean(), fc.constantFrom('true', 0, 1, null)),
      },
      { requiredKeys: [] },
    )
    .map((o) => JSON.stringify(o));
  const deep = fc
    .tuple(fc.integer({ min: 1, max: 20_000 }), fc.constantFrom('[', '{"client_name":', '{"audience":['))
    .map(([n, open]) => {
      const depth = Math.min(n, Math.floor(60_000 / open.length));
      const close = open === '[' ? ']' : open.endsWith('[') ? ']}' : '}';
      return `${open.repeat(depth)}1${close.repeat(depth)}`;
    });
  const huge = fc.oneof(
    fc.integer({ min: 100, max: 40_000 }).map((n) => `[${'1,'.repeat(n)}1]`),
    fc.integer({ min: 100, max: 4_000 }).map((n) => `{"audience":[${`"${API}",`.repeat(n)}"x"]}`),
    fc.integer({ min: 2_000, max: 70_000 }).map((n) => `{"client_name":"${'x'.repeat(n)}"}`),
  );
  const broken = fc.oneof(
    json.chain((s) => fc.nat(s.length).map((i) => bytesOf(s.slice(0, i)))),
    json.map((s) => `\xef\xbb\xbf${bytesOf(s)}`),
    fc.tuple(json, fc.constantFrom(',', '}', ']', ' x', ...RAW_BYTES)).map(([s, t]) => bytesOf(s) + t),
    fc.tuple(fc.constantFrom(...RAW_BYTES), shortText).map(([b, s]) => `{"client_name":"${b}${bytesOf(s)}"}`),
    json.map((s) => Buffer.from(s, 'utf16le').toString('latin1')),
    fc.constantFrom('{"a":1,}', "{'client_name':'x'}", 'NaN', 'Infinity', '-', '01', '{"client_name":"x"', '{"client_name":"x","client_name":5}', 'true', '"x"', '1e309'),
  );
  return fc.oneof(
    { weight: 4, arbitrary: clientLike.map(bytesOf) },
    { weight: 4, arbitrary: json.map(bytesOf) },
    { weight: 1, arbitrary: deep },
    { weight: 1, arbitrary: huge },
    { weight: 2, arbitrary: broken },
    { weight: 2, arbitrary: fc.constantFrom(undefined, '', '{}', 'null', '[]', '{"now":false}', '{"previous_secret_expires_in":0}', '{"previous_secret_expires_in":-1}', '{"enabled":false}') },
  );
}

const FORM_TYPES = [
  'application/x-www-form-urlencoded',
  'application/x-www-form-urlencoded; charset=utf-8',
  'application/x-www-form-urlencoded;charset=UTF-8',
  'application/x-www-form-urlencoded; charset="utf-8"',
  'APPLICATION/X-WWW-FORM-URLENCODED',
  'application/x-www-form-urlencoded; charset=iso-8859-1',
  'application/x-www-form-urlencoded; charset=utf-16le',
  'application/x-www-form-urlencoded; charset=',
  'application/x-www-form-urlencoded; foo',
  'application/x-www-form-urlencoded, application/json',
];
const OTHER_TYPES = [
  'application/json',
  'application/json; charset=utf-8',
  'APPLICATION/JSON',
  'application/json; charset=utf-16',
  'text/plain',
  'multipart/form-data; boundary=fuzzBOUNDARY',
  'multipart/form-data',
  'application/xml',
  'application/octet-stream',
  'application/merge-patch+json',
  '*/*',
  'x',
  ';',
  '',
  'application/x-www-form-urlencoded-not',
];
const contentTypes = (preferred: readonly string[]) =>
  fc.oneof(
    { weight: 16, arbitrary: fc.constant(preferred[0]) },
    { weight: 3, arbitrary: fc.constantFrom(...preferred) },
    { weight: 3, arbitrary: fc.constantFrom(...FORM_TYPES, ...OTHER_TYPES) },
    { weight: 1, arbitrary: fc.constant(undefined) },
    { weight: 1, arbitrary: headerValue },
  );

/** Headers any request may carry on top of its own. */
const extraHeaders = fc.record(
  {
    'X-Request-Id': fc.oneof(headerValue, fc.constantFrom('abc', 'a'.repeat(65), '../../etc')),
    Accept: fc.constantFrom('text/html', 'application/json', '*/*', 'application/xml;q=0.9', ''),
    'Content-Encoding': fc.constantFrom('gzip', 'deflate', 'br', 'identity', 'x-fuzz', 'gzip, deflate'),
    Origin: fc.constantFrom('https://evil.example', 'null'),
    DPoP: headerValue,
    'X-Forwarded-For': fc.constantFrom('1.2.3.4', 'garbage', '::1, 10.0.0.1', ''),
    'X-Forwarded-Host': fc.constantFrom('evil.example', 'a b', ''),
    'If-None-Match': fc.oneof(headerValue, fc.constant('*')),
  },
  { requiredKeys: [] },
);

/** `arb` one time in `n`, else undefined. */
const oneIn = <T>(n: number, arb: fc.Arbitrary<T>): fc.Arbitrary<T | undefined> =>
  fc.oneof({ weight: n - 1, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: arb });

const merge = (...parts: (Record<string, string | undefined> | undefined)[]): Record<string, string> =>
  Object.fromEntries(parts.flatMap((p) => Object.entries(p ?? {})).filter((e): e is [string, string] => e[1] !== undefined));

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

interface Fixtures {
  readonly h: Harness;
  readonly basicId: string;
  readonly basicSecret: string;
  readonly postId: string;
  readonly postSecret: string;
  /** Touched by nothing but the final check. */
  readonly keeper: { readonly id: string; readonly secret: string };
  /** A client the admin fuzzing may read, change, rotate and delete. */
  readonly victimId: string;
  /** admin:read admin:write. */
  readonly writer: string;
  readonly reader: string;
  /** Issued to basicId for API. */
  readonly apiToken: string;
  /** Real, tampered and forged tokens. */
  readonly tokens: readonly string[];
}

const flipLast = (s: string) => `${s.slice(0, -1)}${s.endsWith('A') ? 'B' : 'A'}`;
const b64url = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');

async function tokenFor(h: Harness, id: string, secret: string): Promise<string> {
  const res = await h.request.post(TOKEN_PATH).type('form').set('Authorization', basic(id, secret)).send('grant_type=client_credentials');
  expect(res.status).toBe(200);
  return res.body.access_token as string;
}

async function setUp(env: Record<string, string>): Promise<Fixtures> {
  const h = await startHarness({ ...CHEAP_ARGON2, ...env });
  const admin = await h.createClient({ client_name: 'fuzz admin', ...adminClientSettings(ISSUER) });
  const reader = await h.createClient({ client_name: 'fuzz reader', ...adminClientSettings(ISSUER), scope: 'admin:read' });
  const basicClient = await h.createClient({
    client_name: 'fuzz basic',
    scope: 'read:data write:logs',
    default_scope: 'read:data',
    audience: [API, OTHER_API],
    default_audience: API,
    introspection_audiences: [API],
  });
  const postClient = await h.createClient({ client_name: 'fuzz post', scope: 'read:data', audience: [API], token_endpoint_auth_method: 'client_secret_post' });
  const keeper = await h.createClient({ client_name: 'keeper', scope: 'read:data', audience: [API] });
  const victim = await h.createClient({ client_name: 'victim', scope: 'read:data', audience: [API] });

  const writer = await tokenFor(h, admin.client.clientId, admin.secret);
  const apiToken = await tokenFor(h, basicClient.client.clientId, basicClient.secret);
  const [header, payload] = apiToken.split('.') as [string, string];
  const claims = JSON.parse(Buffer.from(payload, 'base64url').toString()) as Record<string, unknown>;
  const odd = (extra: Record<string, unknown>) => mint(h, { sub: basicClient.client.clientId, client_id: basicClient.client.clientId, aud: API, scope: 'read:data', ...extra });
  const tokens = [
    apiToken,
    flipLast(apiToken),
    `${header}.${payload}.`,
    `${b64url({ alg: 'none', typ: 'at+jwt' })}.${payload}.`,
    `${b64url({ alg: 'HS256', typ: 'at+jwt', kid: JSON.parse(Buffer.from(header, 'base64url').toString()).kid as string })}.${payload}.c2ln`,
    `${header}.${b64url({ ...claims, aud: `${ISSUER}/admin`, scope: 'admin:read admin:write' })}.${apiToken.split('.')[2]!}`,
    await odd({ client_id: 42 }),
    await odd({ aud: [API, `${ISSUER}/admin`] }),
    await odd({ scope: ['admin:read'] }),
    await odd({ exp: 1e300, iat: -1 }),
    await odd({ jti: { $ne: null } }),
    await odd({ client_id: 'no-such-client', sub: 'no-such-client' }),
    'a.b.c',
    '...',
    'x'.repeat(9_000),
  ];
  return {
    h,
    basicId: basicClient.client.clientId,
    basicSecret: basicClient.secret,
    postId: postClient.client.clientId,
    postSecret: postClient.secret,
    keeper: { id: keeper.client.clientId, secret: keeper.secret },
    victimId: victim.client.clientId,
    writer,
    reader: await tokenFor(h, reader.client.clientId, reader.secret),
    apiToken,
    tokens,
  };
}

// ---------------------------------------------------------------------------------------------
// Request generators
// ---------------------------------------------------------------------------------------------

function oauthRequests(f: Fixtures): fc.Arbitrary<Req> {
  const ids = [f.basicId, f.postId, 'no-such-client', `${f.basicId} `, f.basicId.toUpperCase()];
  const secrets = [f.basicSecret, f.postSecret, flipLast(f.basicSecret), `tsec_0000000000000000_${'A'.repeat(43)}`];
  const GRANT_TYPES = [
    'client_credentials',
    'client_credentials',
    'password',
    'refresh_token',
    'authorization_code',
    'implicit',
    'urn:ietf:params:oauth:grant-type:jwt-bearer',
    'urn:ietf:params:oauth:grant-type:token-exchange',
    'urn:ietf:params:oauth:grant-type:device_code',
    'CLIENT_CREDENTIALS',
    'client_credentials ',
  ];
  const anyKey = fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom('grant_type', 'scope', 'resource', 'audience', 'client_id', 'client_secret', 'token', 'token_type_hint') },
    { weight: 2, arbitrary: fc.constantFrom('__proto__', 'constructor', 'prototype', 'hasOwnProperty', 'toString', 'valueOf', 'grant_type[]', 'scope[0]', 'a[b][c]', '', 'GRANT_TYPE', 'client_assertion', 'client_assertion_type', 'code', 'refresh_token', 'request', 'redirect_uri', 'code_verifier', 'requested_token_type', 'subject_token') },
    { weight: 1, arbitrary: shortText },
  );
  // Secrets and tokens only ever go in client_secret and token (below): in another parameter, such
  // as scope, they are rightly logged, and the harness's leak check would take that for a leak.
  const anyValue = fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom('access_token', 'refresh_token', 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', '', ...GRANT_TYPES, ...ids) },
    { weight: 3, arbitrary: text },
    { weight: 1, arbitrary: scopeish },
    { weight: 1, arbitrary: uriish },
  );
  // Parameters with values of roughly the right kind, so that policy, introspection and
  // revocation see them, and anything at all.
  const param = fc.oneof(
    { weight: 3, arbitrary: fc.tuple(fc.constant('scope'), fc.oneof(scopeish, text)) },
    { weight: 3, arbitrary: fc.tuple(fc.constantFrom('resource', 'audience'), fc.oneof(uriish, text)) },
    { weight: 1, arbitrary: fc.tuple(fc.constant('grant_type'), fc.oneof(fc.constantFrom(...GRANT_TYPES), text)) },
    { weight: 2, arbitrary: fc.tuple(fc.constant('token'), fc.oneof(fc.constantFrom(...f.tokens), text)) },
    { weight: 1, arbitrary: fc.tuple(fc.constant('token_type_hint'), fc.oneof(fc.constantFrom('access_token', 'refresh_token', 'id_token', ''), text)) },
    { weight: 1, arbitrary: fc.tuple(fc.constant('client_id'), fc.oneof(fc.constantFrom(...ids), text)) },
    { weight: 1, arbitrary: fc.tuple(fc.constant('client_secret'), fc.oneof(fc.constantFrom(...secrets), text)) },
    { weight: 3, arbitrary: fc.tuple(anyKey, anyValue) },
  );
  // Properly encoded, raw (so & = + % split or decode oddly), a broken escape, or one spliced in.
  const encoded = (s: string) =>
    fc.oneof(
      { weight: 8, arbitrary: fc.constant(pct(s)) },
      { weight: 2, arbitrary: fc.constant(bytesOf(s)) },
      { weight: 1, arbitrary: fc.constantFrom(...HOSTILE_ESCAPES) },
      { weight: 1, arbitrary: fc.tuple(fc.constantFrom(...HOSTILE_ESCAPES, ...RAW_BYTES), fc.nat(s.length)).map(([bad, i]) => pct(s.slice(0, i)) + bad + pct(s.slice(i))) },
    );
  const pair = fc.oneof(
    { weight: 10, arbitrary: param.chain(([k, v]) => fc.tuple(encoded(k), encoded(v))).map(([k, v]) => `${k}=${v}`) },
    { weight: 1, arbitrary: anyKey.chain(encoded) },
    { weight: 1, arbitrary: anyValue.chain(encoded).map((v) => `=${v}`) },
  );
  const pairs = fc
    .tuple(fc.array(pair, { maxLength: 4 }), oneIn(5, fc.nat()))
    .map(([ps, dup]) => (dup === undefined || ps.length === 0 ? ps : [...ps, ps[dup % ps.length]!]));
  // Starts that get past the first checks, so the hostile parameters reach the later steps.
  const postCredentials = `client_id=${pct(f.postId)}&client_secret=${pct(f.postSecret)}`;
  const someToken = fc.constantFrom(...f.tokens.slice(0, 12));
  const cores = (path: string) =>
    path === TOKEN_PATH
      ? fc.oneof(
          { weight: 6, arbitrary: fc.constant(['grant_type=client_credentials']) },
          { weight: 2, arbitrary: fc.constant(['grant_type=client_credentials', postCredentials]) },
          { weight: 1, arbitrary: fc.constant([]) },
        )
      : fc.oneof(
          { weight: 6, arbitrary: someToken.map((t) => [`token=${t}`]) },
          { weight: 2, arbitrary: someToken.map((t) => [`token=${t}`, postCredentials]) },
          { weight: 1, arbitrary: fc.constant([]) },
        );
  const form = (path: string) =>
    fc
      .tuple(cores(path), pairs, fc.constantFrom('&', '&', '&', '&', '&', '&', ';', '&&'), fc.boolean())
      .map(([c, ps, sep, shuffle]) => (shuffle ? [...ps, ...c] : [...c, ...ps]).join(sep));
  const multipart = fc.array(fc.tuple(anyKey, anyValue), { maxLength: 5 }).map(
    (ps) => `${ps.map(([k, v]) => `--fuzzBOUNDARY\r\nContent-Disposition: form-data; name="${bytesOf(k)}"\r\n\r\n${bytesOf(v)}\r\n`).join('')}--fuzzBOUNDARY--\r\n`,
  );
  const json = jsonText(['grant_type', 'scope', 'resource', 'audience', 'client_id', 'client_secret', 'token']).map(bytesOf);
  const body = (path: string) =>
    fc.oneof(
      { weight: 14, arbitrary: form(path) },
      { weight: 1, arbitrary: json },
      { weight: 1, arbitrary: multipart },
      { weight: 1, arbitrary: fc.uint8Array({ maxLength: 2048 }).map((u) => Buffer.from(u).toString('latin1')) },
      { weight: 1, arbitrary: fc.constantFrom('', undefined) },
    );

  // Ids and secrets from separate pools, and a Basic header without a colon holds a secret only:
  // the harness's leak check takes all of such a header for a secret, and a client_id is logged.
  const idPart = fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom(...ids, '') },
    { weight: 3, arbitrary: shortText },
    { weight: 1, arbitrary: fc.constantFrom(...HOSTILE_ESCAPES) },
  );
  const secretPart = fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom(...secrets, '') },
    { weight: 3, arbitrary: shortText.map((s) => `s3cr3t${s}`) },
    { weight: 1, arbitrary: fc.constantFrom(...HOSTILE_ESCAPES).map((e) => `s3cr3t${e}`) },
    // Long, but the whole header stays under Node's 16 KiB limit (beyond it Node answers 431 itself).
    { weight: 1, arbitrary: fc.integer({ min: 100, max: 6_000 }).map((n) => `s3cr3t${'Z'.repeat(n)}`) },
  );
  const authorization = fc.oneof(
    { weight: 14, arbitrary: fc.constant(basic(f.basicId, f.basicSecret)) },
    { weight: 4, arbitrary: fc.constant(undefined) },
    // Well-formed but wrong: these count towards the back-offs.
    { weight: 5, arbitrary: fc.constantFrom(basic(f.postId, f.postSecret), basic(f.basicId, flipLast(f.basicSecret)), basic('no-such-client', f.basicSecret)) },
    {
      weight: 3,
      arbitrary: fc
        .tuple(idPart, fc.constantFrom(':', ':', '::'), secretPart, fc.boolean())
        .map(([id, sep, secret, encode]) => `Basic ${b64(encode ? `${pct(id)}${sep}${pct(secret)}` : bytesOf(`${id}${sep}${secret}`))}`),
    },
    { weight: 1, arbitrary: secretPart.map((secret) => `Basic ${b64(bytesOf(secret))}`) },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 300 }).map((u) => `Basic ${Buffer.from(u).toString('base64')}`) },
    {
      weight: 2,
      arbitrary: fc.constantFrom(
        'Basic',
        'Basic ',
        'basic Zm9vOmJhcg==',
        'BASIC Zm9vOmJhcg==',
        'Basic  Zm9vOmJhcg==',
        'Basic Zm9vOmJhcg',
        'Basic Zm9vOmJhcg===',
        'Basic ====',
        'Basic %%%',
        'Basic Og==',
        'Basic Zm9vOg==',
        'Basic OmJhcg==',
        'Basic Zm9v OmJhcg==',
        'Basic\tZm9vOmJhcg==',
        'Basic Zm9vOmJhcg==, Basic Zm9vOmJhcg==',
        'Bearer',
        'Bearer ',
        'Bearer junk',
        'Digest username="x"',
        'Negotiate YII=',
      ),
    },
    { weight: 1, arbitrary: fc.constantFrom(...f.tokens.slice(0, 3)).map((t) => `Bearer ${t}`) },
    { weight: 1, arbitrary: headerValue },
  );
  const query = oneIn(
    10,
    fc.array(param.filter(([k, v]) => k.length < 40 && v.length < 100).map(([k, v]) => `${pct(k)}=${pct(v)}`), { minLength: 1, maxLength: 3 }).map((ps) => ps.join('&')),
  );

  return fc
    .constantFrom(...OAUTH_PATHS)
    .chain((path) =>
      fc.record({
        path: fc.constant(path),
        query,
        contentType: contentTypes(FORM_TYPES),
        authorization,
        body: body(path),
        chunked: oneIn(10, fc.constant(true)),
        extra: oneIn(3, extraHeaders),
      }),
    )
    .map(({ path, query: q, contentType, authorization: auth, body: b, chunked, extra }) => ({
      method: 'post',
      path: q === undefined ? path : `${path}?${q}`,
      headers: merge(extra, { 'Content-Type': contentType, Authorization: auth }),
      body: b,
      chunked,
    }));
}

/** Path segments for /admin/...: ids that exist, traversal, broken escapes, unicode, very long. */
function segments(f: Fixtures): fc.Arbitrary<string> {
  return fc.oneof(
    {
      weight: 3,
      arbitrary: fc.constantFrom(
        f.victimId,
        f.victimId,
        'ghost',
        '..',
        '.',
        '%2e%2e',
        '%2E',
        '%2F',
        '..%2F..%2Fetc%2Fpasswd',
        '%00',
        '%',
        '%zz',
        '%ED%A0%80',
        '%C0%AF',
        '%20',
        '*',
        '~',
        '-',
        'a'.repeat(129),
        'admin',
        'secrets',
        'rotate',
        'null',
        'undefined',
        '__proto__',
        'constructor',
        '0',
        '-1',
        '1e308',
        'NaN',
      ),
    },
    { weight: 3, arbitrary: shortText.filter((s) => s.length > 0).map(pct) },
    { weight: 1, arbitrary: shortText.map((s) => s.replace(/[/?#\\%\t\n\r]/g, '')).filter((s) => s.length > 0) },
    { weight: 1, arbitrary: fc.webSegment().filter((s) => s.length > 0) },
    { weight: 1, arbitrary: fc.integer({ min: 200, max: 4_000 }).map((n) => 'x'.repeat(n)) },
  );
}

const QUERY_KEYS = ['limit', 'cursor', 'name_prefix', 'enabled', 'client_id', 'type', 'outcome', 'since', 'until'];
const QUERY_VALUES = [
  '0',
  '1',
  '50',
  '200',
  '201',
  '-1',
  '1.5',
  '1e3',
  '00001',
  '9007199254740993',
  'true',
  'false',
  'TRUE',
  'maybe',
  'success',
  'failure',
  'token.issued',
  'client.created',
  '%',
  '%25',
  '_',
  '%zz',
  '2026-01-01T00:00:00Z',
  '2026-13-45T25:61:61Z',
  '9999-12-31T23:59:59.999999999+23:59',
  '0000-01-01T00:00:00-00:00',
  '2026-01-01t00:00:00z',
  '+275760-09-13T00:00:00Z',
  '',
];

function adminRequests(f: Fixtures): fc.Arbitrary<Req> {
  const seg = segments(f);
  type Route = readonly [fc.Arbitrary<string>, readonly string[]];
  const routes: Route[] = [
    [fc.constant('/admin/clients'), ['get', 'post']],
    [seg.map((s) => `/admin/clients/${s}`), ['get', 'patch', 'delete']],
    [seg.map((s) => `/admin/clients/${s}/secrets`), ['get', 'post']],
    [fc.tuple(seg, seg).map(([a, b]) => `/admin/clients/${a}/secrets/${b}`), ['delete']],
    [seg.map((s) => `/admin/clients/${s}/revoke-tokens`), ['post']],
    [seg.map((s) => `/admin/tokens/${s}`), ['delete']],
    [fc.constant('/admin/audit-events'), ['get']],
    [seg.map((s) => `/admin/audit-events/${s}`), ['get']],
    [fc.constant('/admin/keys'), ['get']],
    [fc.constant('/admin/keys/rotate'), ['post']],
    [seg.map((s) => `/admin/keys/${s}/revoke`), ['post']],
    [fc.array(seg, { minLength: 1, maxLength: 4 }).map((ss) => `/admin/${ss.join('/')}`), ['get', 'post']],
  ];
  const anyMethod = fc.constantFrom('get', 'post', 'patch', 'delete', 'put', 'head', 'options');
  // Mostly a method the route serves; sometimes any.
  const route = fc.oneof(
    ...routes.map(([p, methods]) => fc.tuple(p, fc.oneof({ weight: 6, arbitrary: fc.constantFrom(...methods) }, { weight: 1, arbitrary: anyMethod }))),
  );
  const query = oneIn(
    3,
    fc
      .array(
        fc.tuple(
          fc.oneof({ weight: 5, arbitrary: fc.constantFrom(...QUERY_KEYS) }, { weight: 1, arbitrary: fc.constantFrom('limit[]', '__proto__', 'constructor', 'cursor[a]') }, { weight: 1, arbitrary: shortText.map(pct) }),
          fc.oneof(
            { weight: 4, arbitrary: fc.constantFrom(...QUERY_VALUES) },
            { weight: 2, arbitrary: shortText.map(pct) },
            { weight: 1, arbitrary: fc.constantFrom(...HOSTILE_ESCAPES) },
            { weight: 1, arbitrary: fc.uint8Array({ maxLength: 64 }).map((u) => Buffer.from(u).toString('base64url')) },
          ),
        ),
        { maxLength: 5 },
      )
      .map((ps) => ps.map(([k, v]) => `${k}=${v}`).join('&')),
  );
  const garbage = fc.oneof(
    fc.constantFrom(
      undefined,
      `Bearer ${f.reader}`,
      `Bearer ${f.apiToken}`,
      `Bearer ${flipLast(f.writer)}`,
      `Bearer ${f.writer}x`,
      `Bearer  ${f.writer}`,
      `Bearer ${f.writer}, Bearer ${f.writer}`,
      `Basic ${b64(`${f.basicId}:${f.basicSecret}`)}`,
      'Bearer',
      'Bearer ',
      'Bearer ===',
      'Bearer a.b.c',
    ),
    fc.constantFrom(...f.tokens).map((t) => `Bearer ${t}`),
    fc.uint8Array({ maxLength: 200 }).map((u) => `Bearer ${Buffer.from(u).toString('base64url')}`),
    headerValue,
  );
  return fc
    .record({
      route,
      query,
      authorization: fc.oneof(fc.constant(`Bearer ${f.writer}`), garbage),
      contentType: contentTypes(['application/json', 'application/json; charset=utf-8']),
      ifMatch: fc.option(fc.oneof(fc.constantFrom('*', '"nope"', 'W/"x"', '', '*, "x"'), headerValue), { freq: 2 }),
      body: adminBodies(),
      chunked: oneIn(10, fc.constant(true)),
      extra: oneIn(3, extraHeaders),
    })
    .map(({ route: [p, method], query: q, authorization, contentType, ifMatch, body, chunked, extra }) => ({
      method,
      path: q === undefined ? p : `${p}?${q}`,
      headers: merge(extra, { Authorization: authorization, 'Content-Type': contentType, 'If-Match': ifMatch ?? undefined }),
      body: method === 'head' ? undefined : body,
      chunked,
    }));
}

function anyRequests(f: Fixtures, methods: readonly string[]): fc.Arbitrary<Req> {
  const known = fc.constantFrom(
    ...OAUTH_PATHS,
    ...PUBLIC_PATHS,
    '/admin/clients',
    '/admin/keys',
    '/admin/audit-events',
    '/',
    '/oauth',
    '/.well-known',
    '/.well-known/',
    '/auth',
    '/token',
    '/jwks',
    '/me',
    '/reg',
    '/session/end',
    '/device/auth',
    '/request',
    '/token/introspection',
    '/interaction/x',
  );
  const path = fc.oneof(
    { weight: 4, arbitrary: known },
    { weight: 2, arbitrary: fc.tuple(known, fc.constantFrom('/', '//', '/.', '/..', '%2F', '%00', '%', '?', '?x=1&x=2', ';jsessionid=1', '.json', '~', ' ')).map(([p, s]) => p + s) },
    { weight: 1, arbitrary: known.map((p) => p.toUpperCase()) },
    { weight: 1, arbitrary: known.map((p) => `/${p}`) },
    { weight: 2, arbitrary: fc.array(segments(f), { maxLength: 5 }).map((ss) => `/${ss.join('/')}`) },
    { weight: 1, arbitrary: fc.webPath().map((p) => (p.startsWith('/') ? p : `/${p}`)) },
  );
  return fc
    .record({
      method: fc.constantFrom(...methods),
      path,
      authorization: fc.option(fc.oneof(fc.constant(`Bearer ${f.writer}`), fc.constant(basic(f.basicId, f.basicSecret)), headerValue), { freq: 2 }),
      contentType: contentTypes([...FORM_TYPES, 'application/json']),
      body: fc.option(fc.oneof(jsonText(CLIENT_FIELDS).map(bytesOf), fc.constant('grant_type=client_credentials'), fc.uint8Array({ maxLength: 512 }).map((u) => Buffer.from(u).toString('latin1'))), { freq: 2 }),
      extra: oneIn(2, extraHeaders),
    })
    .map(({ method, path: p, authorization, contentType, body, extra }) => ({
      method,
      path: p,
      headers: merge(extra, { Authorization: authorization ?? undefined, 'Content-Type': contentType }),
      body: method === 'head' || body === null ? undefined : body,
    }));
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

/** A valid token request must succeed; a 429 with Retry-After is honoured by moving the clock on. */
async function expectStillIssues(f: Fixtures): Promise<void> {
  for (let attempt = 0; ; attempt += 1) {
    const res = await f.h.request.post(TOKEN_PATH).type('form').set('Authorization', basic(f.keeper.id, f.keeper.secret)).send('grant_type=client_credentials');
    const retryAfter = Number(res.headers['retry-after']);
    if (res.status === 429 && attempt < 3 && Number.isInteger(retryAfter) && retryAfter > 0) {
      f.h.clock.advance(retryAfter + 1);
      continue;
    }
    expect({ status: res.status, body: res.body }).toMatchObject({ status: 200, body: { access_token: expect.any(String), token_type: 'Bearer' } });
    return;
  }
}

const unhandled: unknown[] = [];
const onUnhandled = (err: unknown) => {
  unhandled.push(err);
};

beforeAll(() => {
  process.on('unhandledRejection', onUnhandled);
  process.on('uncaughtException', onUnhandled);
});
afterAll(() => {
  process.off('unhandledRejection', onUnhandled);
  process.off('uncaughtException', onUnhandled);
});

/** FUZZ_STATS=1: how the answers were spread, to see what the generators reach. */
const STATS = process.env.FUZZ_STATS === '1';

function statsKey(req: Req, a: Answer): string {
  let error = '';
  try {
    const { error: code, error_description: description } = JSON.parse(a.raw.toString('utf8')) as Record<string, unknown>;
    error = `${typeof code === 'string' ? code : ''} ${typeof description === 'string' ? description.slice(0, 70) : ''}`;
  } catch {
    // a success without a body
  }
  const family = familyOf(req.path);
  return `${req.method.toUpperCase()} ${family === 'oauth' ? pathOf(req.path) : family} ${a.status} ${error}`;
}

async function fuzz(f: Fixtures, requests: fc.Arbitrary<Req>, numRuns: number): Promise<void> {
  const seen = new Map<string, number>();
  await fc.assert(
    fc.asyncProperty(requests, async (req) => {
      const a = await exchange(f.h, req);
      if (STATS) seen.set(statsKey(req, a), (seen.get(statsKey(req, a)) ?? 0) + 1);
    }),
    { numRuns, ...replay },
  );
  if (STATS) process.stdout.write(`${[...seen].sort(([a], [b]) => a.localeCompare(b)).map(([k, n]) => `${String(n).padStart(5)}  ${k}`).join('\n')}\n`);
  expect(unhandled).toEqual([]);
}

describe('fuzzing every endpoint with hostile input (limits off, so input reaches every step)', () => {
  let f: Fixtures;
  beforeAll(async () => {
    f = await setUp(NO_LIMITS);
  });
  afterAll(() => f.h.close());

  it('/oauth/token, /oauth/introspect, /oauth/revoke: never 5xx, RFC errors as JSON with fitting statuses', async () => {
    await fuzz(f, oauthRequests(f), runs(300));
  }, 120_000);

  it('/admin/*: never 5xx, {error, error_description, field?} JSON with fitting statuses, valid or garbage tokens', async () => {
    await fuzz(f, adminRequests(f), runs(300));
  }, 120_000);

  it('any method on any path: JSON 404/405, public documents 200, never 5xx', async () => {
    const methods = Object.keys(f.h.request).filter((m) => m !== 'connect' && m !== 'del');
    await fuzz(f, anyRequests(f, methods), runs(200));
  }, 120_000);

  it('a body refused when sent with Content-Length is refused when sent chunked too', async () => {
    // Framing must not change the verdict: a handler that reads the body only when Content-Length
    // says there is one would take a chunked body it should refuse (or obey) for no body at all.
    // Only refusals are replayed: they change nothing, so the second answer is comparable.
    const requests = fc.oneof(adminRequests(f), oauthRequests(f)).filter((r) => r.body !== undefined && r.body !== '' && r.method !== 'head');
    await fc.assert(
      fc.asyncProperty(requests, async (r) => {
        const plain = { ...r, chunked: false };
        const first = await exchange(f.h, plain);
        if (![400, 413, 415].includes(first.status)) return;
        const chunked = { ...r, chunked: true };
        const second = await exchange(f.h, chunked);
        if (second.status < 400) {
          throw new Error(`refused with Content-Length (${first.status}), accepted chunked (${second.status})\n${show(plain, first)}\n${show(chunked, second)}`);
        }
      }),
      { numRuns: runs(300), ...replay },
    );
    expect(unhandled).toEqual([]);
  }, 120_000);

  it('still issues a token to a valid client_credentials request after all of that', async () => {
    await expectStillIssues(f);
  });
});

describe('fuzzing the OAuth endpoints with back-off and token rate limits on', () => {
  let f: Fixtures;
  beforeAll(async () => {
    f = await setUp(LOW_LIMITS);
  });
  afterAll(() => f.h.close());

  it('refusals by a limit are 429 temporarily_unavailable with Retry-After, never 5xx', async () => {
    await fuzz(f, oauthRequests(f), runs(150));
  }, 120_000);

  it('still issues a token to a valid client_credentials request, at the latest after Retry-After', async () => {
    await expectStillIssues(f);
  });
});
