/**
 * The container deployment, checked without a Docker engine. The Dockerfile, docker-compose.yml and
 * deploy/nginx.conf are parsed and held to what the server really does: its start command (the
 * `start` script), the environment variables src/config.ts reads, where it keeps its database and
 * keys, its port, its health endpoint. Every check is also run against deliberately broken copies of
 * the files, so none of them passes vacuously. Then the image's start command is run the way the
 * container runs it: the image's environment and the compose service's, on a temporary "volume".
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';

import { dialectOf, loadConfig } from '../../src/config.js';
import { ROOT, freePort, startServer, type RunningServer } from '../support/process.js';

const FILES = ['Dockerfile', 'docker-compose.yml', 'deploy/nginx.conf', 'package.json', 'src/config.ts', 'tsconfig.json'] as const;
type FileName = (typeof FILES)[number];
type Files = Readonly<Record<FileName, string>>;

const readFiles = (root: string): Files => Object.fromEntries(FILES.map((name) => [name, readFileSync(join(root, name), 'utf8')])) as Files;

// ---------------------------------------------------------------------------------------------
// Dockerfile

interface Instruction {
  readonly keyword: string;
  readonly args: string;
  /** 0 for the first FROM's stage; -1 before any FROM (global ARGs). */
  readonly stage: number;
}

/** Logical lines (continuations joined, comments dropped) as instructions, each with its stage. */
function parseDockerfile(text: string): Instruction[] {
  const instructions: Instruction[] = [];
  let stage = -1;
  let pending = '';
  for (const raw of text.split('\n')) {
    if (/^\s*#/.test(raw)) continue;
    const continued = /\\\s*$/.test(raw);
    pending += `${raw.replace(/\\\s*$/, '')} `;
    if (continued) continue;
    const line = pending.trim();
    pending = '';
    if (line === '') continue;
    const [, keyword = '', args = ''] = /^(\S+)\s*(.*)$/s.exec(line) ?? [];
    if (keyword.toUpperCase() === 'FROM') stage += 1;
    instructions.push({ keyword: keyword.toUpperCase(), args: args.trim(), stage });
  }
  return instructions;
}

/** `["a", "b"]` → ['a', 'b']; anything else (the shell form) → undefined. */
function execForm(args: string): string[] | undefined {
  try {
    const value: unknown = JSON.parse(args);
    return Array.isArray(value) && value.every((v) => typeof v === 'string') ? value : undefined;
  } catch {
    return undefined;
  }
}

/** `ENV A=b C="d e"`; the legacy `ENV A b` form → undefined. */
function envPairs(args: string): [string, string][] | undefined {
  const pairs = [...args.matchAll(/([A-Za-z_][A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*"|\S*)/g)].map(([, name = '', value = '']): [string, string] => [name, value.startsWith('"') ? (JSON.parse(value) as string) : value]);
  return pairs.length > 0 && args.replace(/([A-Za-z_][A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*"|\S*)/g, '').trim() === '' ? pairs : undefined;
}

interface Image {
  readonly stages: readonly { readonly image: string; readonly instructions: readonly Instruction[] }[];
  /** The final stage: what runs. */
  readonly final: readonly Instruction[];
  readonly env: Readonly<Record<string, string>>;
  readonly cmd: readonly string[] | undefined;
  /** The HEALTHCHECK's command, exec form, without its `CMD`. */
  readonly healthcheck: readonly string[] | undefined;
  readonly port: number;
}

function readImage(dockerfile: string, problems: string[]): Image {
  const instructions = parseDockerfile(dockerfile);
  const globals = new Map<string, string>();
  for (const { args } of instructions.filter((i) => i.stage === -1 && i.keyword === 'ARG')) {
    const [name = '', value = ''] = args.split('=');
    globals.set(name, value);
  }
  const lastStage = Math.max(...instructions.map((i) => i.stage));
  const stages = Array.from({ length: lastStage + 1 }, (_, stage) => {
    const inStage = instructions.filter((i) => i.stage === stage);
    const from = inStage[0]?.args.split(/\s+/)[0] ?? '';
    const image = from.replace(/\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?/g, (_all, name: string) => globals.get(name) ?? '');
    return { image, instructions: inStage };
  });
  const final = stages.at(-1)?.instructions ?? [];

  const env: Record<string, string> = {};
  for (const { args } of final.filter((i) => i.keyword === 'ENV')) {
    const pairs = envPairs(args);
    if (!pairs) problems.push(`Dockerfile: ENV ${args} is not in the NAME=value form`);
    for (const [name, value] of pairs ?? []) env[name] = value;
  }

  const cmds = final.filter((i) => i.keyword === 'CMD');
  const cmd = cmds.length > 0 ? execForm(cmds.at(-1)!.args) : undefined;
  if (cmds.length === 0) problems.push('Dockerfile: the final stage has no CMD');
  else if (!cmd) problems.push('Dockerfile: CMD must be in exec form (JSON array), so that node is PID 1 and receives STOPSIGNAL');

  const health = final.filter((i) => i.keyword === 'HEALTHCHECK').at(-1);
  const healthMatch = health ? /^((?:--[a-z-]+=\S+\s+)*)CMD\s+(.*)$/s.exec(health.args) : null;
  const healthcheck = healthMatch ? execForm(healthMatch[2] ?? '') : undefined;
  if (!healthcheck) problems.push('Dockerfile: the final stage needs HEALTHCHECK [options] CMD ["node", …] (exec form)');

  const port = Number(env.PORT ?? 3000);
  return { stages, final, env, cmd, healthcheck, port };
}

function dockerfileProblems(files: Files, image: Image, configNames: ReadonlySet<string>, problems: string[]): void {
  const pkg = JSON.parse(files['package.json']) as { scripts: Record<string, string>; engines: { node: string } };
  const { stages, final, env } = image;

  // The native modules are compiled in one stage and loaded in the other: same base image.
  const images = new Set(stages.map((s) => s.image));
  const [base = ''] = images;
  const major = /^node:(\d+)-slim$/.exec(base)?.[1];
  const minimum = /^>=\s*(\d+)\./.exec(pkg.engines.node)?.[1];
  if (stages.length < 2) problems.push('Dockerfile: expected a build stage and a runtime stage');
  if (images.size !== 1 || !major) problems.push(`Dockerfile: every stage must use the same node:<major>-slim image, got ${[...images].join(', ')}`);
  else if (!minimum || Number(major) < Number(minimum)) problems.push(`Dockerfile: ${base} is outside package.json engines.node ${pkg.engines.node}`);

  const runs = (instructions: readonly Instruction[]) => instructions.filter((i) => i.keyword === 'RUN').map((i) => i.args).join('\n');
  const build = runs(stages.slice(0, -1).flatMap((s) => s.instructions));
  for (const tool of ['python3', 'make', 'g++']) {
    if (!new RegExp(`apt-get install[^\\n&]*\\s${tool.replace('+', '\\+')}(\\s|$)`).test(build)) problems.push(`Dockerfile: the build stage must install ${tool} (native modules may compile)`);
  }
  if (/g\+\+|build-essential/.test(runs(final))) problems.push('Dockerfile: the runtime stage must not install a compiler');
  for (const step of ['npm ci', 'npm run build', '--omit=dev']) {
    if (!build.includes(step)) problems.push(`Dockerfile: the build stage must run ${step}`);
  }

  // What runs: the compiled server and migrations (tsconfig's outDir), production node_modules, the CLI.
  const { outDir, rootDir } = (JSON.parse(files['tsconfig.json']) as { compilerOptions: { outDir: string; rootDir: string } }).compilerOptions;
  const copies = final.filter((i) => i.keyword === 'COPY').map((i) => i.args.split(/\s+/));
  const copied = (path: string, fromBuild: boolean) =>
    copies.some((words) => words.some((w) => posix.normalize(w.replace(/^\/app\//, '')) === path) && words.some((w) => w.startsWith('--from=')) === fromBuild);
  for (const path of ['package.json', 'node_modules', posix.join(outDir, posix.relative(rootDir, 'src')), posix.join(outDir, posix.relative(rootDir, 'migrations'))]) {
    if (!copied(path, true)) problems.push(`Dockerfile: the runtime stage must COPY --from=<build stage> ${path}`);
  }
  if (!copied('bin', false)) problems.push('Dockerfile: the runtime stage must COPY bin (the tessera CLI)');

  const user = final.filter((i) => i.keyword === 'USER').at(-1)?.args.split(':')[0];
  if (!user || user === 'root' || user === '0') problems.push(`Dockerfile: the runtime stage must end with USER <non-root>, got ${user ?? 'none'}`);
  else if (!new RegExp(`chown\\b[^\\n]*\\b${user}\\b`).test(runs(final))) problems.push(`Dockerfile: the data and keys directories must be chowned to ${user}`);

  const stopSignal = final.filter((i) => i.keyword === 'STOPSIGNAL').at(-1)?.args;
  if (stopSignal !== 'SIGTERM') problems.push(`Dockerfile: STOPSIGNAL must be SIGTERM (graceful shutdown), got ${stopSignal ?? 'none'}`);

  const exposed = final.filter((i) => i.keyword === 'EXPOSE').flatMap((i) => i.args.split(/\s+/).map((p) => Number(p.split('/')[0])));
  if (!exposed.includes(image.port)) problems.push(`Dockerfile: EXPOSE ${exposed.join(' ')} does not include the server's PORT ${image.port}`);

  if (image.healthcheck && (image.healthcheck[0] !== 'node' || !image.healthcheck.join(' ').includes('http://127.0.0.1:') || !image.healthcheck.join(' ').includes('/healthz'))) {
    problems.push(`Dockerfile: HEALTHCHECK must ask http://127.0.0.1:<PORT>/healthz with node (slim has no curl), got ${JSON.stringify(image.healthcheck)}`);
  }

  const start = pkg.scripts.start?.split(/\s+/) ?? [];
  if (image.cmd && JSON.stringify(image.cmd) !== JSON.stringify(start)) problems.push(`Dockerfile: CMD ${JSON.stringify(image.cmd)} is not package.json's start script ${JSON.stringify(start)}`);
  if (final.some((i) => i.keyword === 'ENTRYPOINT')) problems.push('Dockerfile: ENTRYPOINT would run in front of CMD');

  envProblems('Dockerfile ENV', env, env, configNames, problems);
  if (env.HOST !== '0.0.0.0') problems.push(`Dockerfile: HOST must be 0.0.0.0 in a container, got ${env.HOST ?? 'the default 127.0.0.1'}`);
  const volumes = final.filter((i) => i.keyword === 'VOLUME').flatMap((i) => execForm(i.args) ?? i.args.split(/\s+/));
  for (const dir of stateDirs(env)) {
    if (!volumes.some((v) => within(dir, v))) problems.push(`Dockerfile: ${dir} (from ENV) is not in a VOLUME`);
  }
}

// ---------------------------------------------------------------------------------------------
// Environment

/** Every variable src/config.ts reads: `env.NAME`, `env['NAME']`, and names passed as `int('NAME', …)`. */
function configVariables(source: string): Set<string> {
  const names = new Set<string>();
  for (const [, a, b, c] of source.matchAll(/\benv\.([A-Z][A-Z0-9_]*)|\benv\[['"]([A-Z][A-Z0-9_]*)['"]\]|\b[a-zA-Z]+\(\s*'([A-Z][A-Z0-9_]*)'/g)) names.add((a ?? b ?? c)!);
  return names;
}

/**
 * `set` are the variables this file sets, `env` all the process would see. Each name must be one the
 * server reads (a misspelt name would be ignored silently), and the server must accept the values.
 */
function envProblems(where: string, set: Readonly<Record<string, string>>, env: Readonly<Record<string, string>>, configNames: ReadonlySet<string>, problems: string[]): void {
  for (const name of Object.keys(set)) {
    if (!configNames.has(name)) problems.push(`${where}: ${name} is not a variable src/config.ts reads`);
  }
  try {
    loadConfig(env);
  } catch (err) {
    problems.push(`${where}: the server would refuse this configuration: ${(err as Error).message}`);
  }
}

/** The directories the server writes: KEYS_DIR, and the SQLite file's directory (none if the server would refuse `env`). */
function stateDirs(env: Readonly<Record<string, string>>): string[] {
  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig(env);
  } catch {
    return [];
  }
  return [config.keysDir, ...(dialectOf(config.databaseUrl) === 'sqlite' ? [posix.dirname(config.databaseUrl)] : [])];
}

/** The port a URL reaches, its scheme's default if it names none. */
const portOf = (url: string) => Number(new URL(url).port || (new URL(url).protocol === 'https:' ? 443 : 80));

const within = (path: string, dir: string) => path === dir || path.startsWith(`${dir.replace(/\/$/, '')}/`);

// ---------------------------------------------------------------------------------------------
// docker-compose.yml

type EnvValue = string | number | boolean | null;
interface Service {
  build?: unknown;
  image?: string;
  command?: string | string[];
  entrypoint?: string | string[];
  environment?: Record<string, EnvValue> | string[];
  volumes?: (string | { type?: string; source?: string; target?: string })[];
  ports?: (string | number | { target?: number; published?: string | number })[];
  healthcheck?: { test?: string | string[]; disable?: boolean };
  depends_on?: string[] | Record<string, { condition?: string }>;
  profiles?: string[];
  restart?: string;
}
interface Compose {
  services?: Record<string, Service>;
  volumes?: Record<string, unknown>;
}

/** Interpolation as `docker compose` does it with none of the variables set: every default applies. */
function interpolate(text: string, problems: string[]): string {
  return text.replace(/\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)/g, (all, _name, op: string | undefined, arg: string | undefined) => {
    if (all === '$$') return '$';
    if (op === ':-' || op === '-') return arg ?? '';
    problems.push(`docker-compose.yml: ${all} has no default, so \`docker compose up\` depends on the caller's environment`);
    return '';
  });
}

function parseCompose(text: string, problems: string[]): Compose {
  return parseYaml(interpolate(text, problems), { merge: true }) as Compose;
}

function serviceEnv(service: Service): Record<string, string> {
  const { environment } = service;
  if (Array.isArray(environment)) return Object.fromEntries(environment.map((entry) => [entry.split('=')[0] ?? '', entry.split('=').slice(1).join('=')]));
  return Object.fromEntries(Object.entries(environment ?? {}).map(([name, value]) => [name, value === null ? '' : String(value)]));
}

function mounts(service: Service): { source: string; target: string }[] {
  return (service.volumes ?? []).map((v) => {
    if (typeof v !== 'string') return { source: v.source ?? '', target: v.target ?? '' };
    const [source = '', target = ''] = v.split(':');
    return { source, target };
  });
}

/** Published ports as { host, container }. */
function ports(service: Service): { host: number | undefined; container: number }[] {
  return (service.ports ?? []).map((p) => {
    if (typeof p === 'object') return { host: p.published === undefined ? undefined : Number(p.published), container: Number(p.target) };
    const parts = String(p).split('/')[0]!.split(':');
    return { host: parts.length > 1 ? Number(parts.at(-2)) : undefined, container: Number(parts.at(-1)) };
  });
}

const dependencies = (service: Service): [string, string | undefined][] =>
  Array.isArray(service.depends_on) ? service.depends_on.map((name) => [name, undefined]) : Object.entries(service.depends_on ?? {}).map(([name, d]) => [name, d?.condition]);

const SCALE = 'scale';
const EXPECTED_SERVICES: Readonly<Record<string, string | undefined>> = { tessera: undefined, postgres: SCALE, 'tessera-a': SCALE, 'tessera-b': SCALE, proxy: SCALE };

function composeProblems(files: Files, image: Image, configNames: ReadonlySet<string>, problems: string[]): void {
  const compose = parseCompose(files['docker-compose.yml'], problems);
  const services = compose.services ?? {};
  const namedVolumes = new Set(Object.keys(compose.volumes ?? {}));

  for (const [name, profile] of Object.entries(EXPECTED_SERVICES)) {
    const service = services[name];
    if (!service) problems.push(`docker-compose.yml: no service ${name}`);
    else if (profile === undefined ? (service.profiles ?? []).length > 0 : !(service.profiles ?? []).includes(profile)) {
      problems.push(`docker-compose.yml: ${name} must be in ${profile === undefined ? 'the default profile' : `profile ${profile}`}`);
    }
  }

  const tesseras = Object.entries(services).filter(([, s]) => s.build !== undefined);
  const healthy = (name: string) => {
    const s = services[name];
    return s !== undefined && s.healthcheck?.disable !== true && (s.healthcheck?.test !== undefined || (s.build !== undefined && image.healthcheck !== undefined));
  };
  const enabledWith = (dependant: Service, target: Service) =>
    (target.profiles ?? []).length === 0 || (dependant.profiles ?? []).some((p) => target.profiles!.includes(p));

  for (const [name, service] of Object.entries(services)) {
    for (const [target, condition] of dependencies(service)) {
      if (condition !== 'service_healthy') problems.push(`docker-compose.yml: ${name} depends on ${target} with condition ${condition ?? '(none)'}, not service_healthy`);
      if (!services[target]) problems.push(`docker-compose.yml: ${name} depends on ${target}, which is not a service`);
      else if (!healthy(target)) problems.push(`docker-compose.yml: ${name} waits for ${target} to be healthy, but ${target} has no healthcheck`);
      else if (!enabledWith(service, services[target])) problems.push(`docker-compose.yml: ${target} is not enabled with ${name}'s profiles`);
    }
    for (const { source } of mounts(service)) {
      if (!/^[./~]/.test(source) && !namedVolumes.has(source)) problems.push(`docker-compose.yml: ${name} mounts ${source || 'an anonymous volume'}, which is not a named volume`);
    }
  }

  const postgres = services.postgres;
  if (postgres && !JSON.stringify(postgres.healthcheck?.test ?? '').includes('pg_isready')) problems.push('docker-compose.yml: postgres needs a pg_isready healthcheck');
  if (postgres && !mounts(postgres).some((m) => namedVolumes.has(m.source) && m.target === '/var/lib/postgresql/data')) problems.push('docker-compose.yml: postgres needs a named volume at /var/lib/postgresql/data');

  const start = image.cmd ?? [];
  const scaled: { name: string; env: Record<string, string>; keysVolume: string | undefined }[] = [];
  for (const [name, service] of tesseras) {
    const where = `docker-compose.yml ${name}`;
    if (!service.healthcheck?.test || service.healthcheck.disable === true) problems.push(`${where}: no healthcheck`);
    else if (JSON.stringify(service.healthcheck.test) !== JSON.stringify(['CMD', ...(image.healthcheck ?? [])])) problems.push(`${where}: healthcheck differs from the Dockerfile's HEALTHCHECK`);
    if (!service.restart) problems.push(`${where}: no restart policy`);
    for (const key of ['command', 'entrypoint'] as const) {
      const value = service[key];
      const argv = typeof value === 'string' ? value.split(/\s+/) : value;
      if (key === 'entrypoint' && argv !== undefined) problems.push(`${where}: entrypoint would run in front of the image's CMD`);
      if (key === 'command' && argv !== undefined && JSON.stringify(argv) !== JSON.stringify(start)) problems.push(`${where}: command ${JSON.stringify(argv)} is not the image's CMD ${JSON.stringify(start)}`);
    }

    const own = serviceEnv(service);
    const env = { ...image.env, ...own };
    envProblems(where, own, env, configNames, problems);
    let config: ReturnType<typeof loadConfig>;
    try {
      config = loadConfig(env);
    } catch {
      continue; // reported above
    }
    const volumeAt = (dir: string) => mounts(service).find((m) => namedVolumes.has(m.source) && within(dir, m.target));
    for (const dir of stateDirs(env)) {
      if (!volumeAt(dir)) problems.push(`${where}: ${dir} is not on a named volume`);
    }
    const published = ports(service);

    if (dialectOf(config.databaseUrl) === 'postgres') {
      const host = new URL(config.databaseUrl).hostname;
      if (!dependencies(service).some(([target, condition]) => target === host && condition === 'service_healthy')) problems.push(`${where}: DATABASE_URL names ${host}, which it does not wait for (depends_on service_healthy)`);
      if (!config.trustProxy) problems.push(`${where}: behind the proxy it needs TRUST_PROXY=true`);
      scaled.push({ name, env: own, keysVolume: volumeAt(config.keysDir)?.source });
    } else {
      const port = published.find((p) => p.container === config.port);
      if (!port) problems.push(`${where}: the server's port ${config.port} is not published`);
      else if (new URL(config.issuer).hostname === 'localhost' && portOf(config.issuer) !== port.host) problems.push(`${where}: ISSUER ${config.issuer} is not the published port ${port.host}`);
    }
  }

  // The scale profile: two or more instances with one issuer, one database, one keys volume, behind the proxy.
  if (scaled.length < 2) problems.push(`docker-compose.yml: the scale profile needs two Tessera instances on PostgreSQL, found ${scaled.length}`);
  for (const key of ['ISSUER', 'DATABASE_URL'] as const) {
    if (new Set(scaled.map((s) => s.env[key])).size > 1) problems.push(`docker-compose.yml: the scaled instances must share one ${key}`);
  }
  if (new Set(scaled.map((s) => s.keysVolume)).size > 1) problems.push('docker-compose.yml: the scaled instances must share one keys volume');

  const proxy = services.proxy;
  if (!proxy) return;
  const conf = mounts(proxy).find((m) => m.target.startsWith('/etc/nginx/'));
  if (!conf || posix.normalize(conf.source) !== 'deploy/nginx.conf') {
    problems.push(`docker-compose.yml proxy: must mount ./deploy/nginx.conf, got ${conf?.source ?? 'nothing'}`);
    return;
  }
  const nginx = files['deploy/nginx.conf'].replace(/#.*$/gm, '');
  const upstream = [...nginx.matchAll(/^\s*server\s+([^\s;:]+):(\d+)/gm)].map(([, host, port]) => `${host}:${port}`).sort();
  const expected = scaled.map((s) => `${s.name}:${loadConfig({ ...image.env, ...s.env }).port}`).sort();
  if (JSON.stringify(upstream) !== JSON.stringify(expected)) problems.push(`deploy/nginx.conf: upstream ${upstream.join(', ')} is not the scaled instances ${expected.join(', ')}`);
  if (!/proxy_set_header\s+X-Forwarded-For\s+\$proxy_add_x_forwarded_for;/.test(nginx)) problems.push('deploy/nginx.conf: must pass X-Forwarded-For ($proxy_add_x_forwarded_for)');
  // Tessera closes idle connections after 5 s (server.ts keepAliveTimeout).
  const idle = /^\s*keepalive_timeout\s+(\d+)s;/m.exec(nginx);
  if (!idle || Number(idle[1]) >= 5) problems.push(`deploy/nginx.conf: the upstream keepalive_timeout must be under Tessera's 5 s, got ${idle?.[1] ?? "nginx's 60"}`);
  const accessLog = /^\s*access_log\s+\S+\s+(\w+);/m.exec(nginx)?.[1];
  const format = accessLog && new RegExp(`^\\s*log_format\\s+${accessLog}\\s+([^;]*);`, 'm').exec(nginx)?.[1];
  if (!format) problems.push('deploy/nginx.conf: access_log must name a log_format of this file (the default logs $remote_user)');
  else if (format.includes('$remote_user') || format.includes('$http_authorization')) problems.push('deploy/nginx.conf: the access log must not hold a Basic user name or an Authorization header');
  if (!/location\s+=\s+\/metrics\s*\{\s*return\s+404;\s*\}/.test(nginx)) problems.push('deploy/nginx.conf: /metrics must not be served through the balancer');
  const listen = Number(/^\s*listen\s+(\d+)/m.exec(nginx)?.[1]);
  const port = ports(proxy).find((p) => p.container === listen);
  if (!port) problems.push(`docker-compose.yml proxy: nginx listens on ${listen}, which is not published`);
  const issuer = scaled[0] && loadConfig({ ...image.env, ...scaled[0].env }).issuer;
  if (port && issuer && new URL(issuer).hostname === 'localhost' && portOf(issuer) !== port.host) problems.push(`docker-compose.yml: the scaled ISSUER ${issuer} is not the proxy's published port ${port.host}`);
  for (const { name } of scaled) {
    if (!dependencies(proxy).some(([target]) => target === name)) problems.push(`docker-compose.yml proxy: does not wait for ${name}`);
  }
}

/** Every way the deployment files disagree with each other or with the server. */
function deploymentProblems(files: Files): string[] {
  const problems: string[] = [];
  const configNames = configVariables(files['src/config.ts']);
  const image = readImage(files.Dockerfile, problems);
  dockerfileProblems(files, image, configNames, problems);
  composeProblems(files, image, configNames, problems);
  return problems;
}

// ---------------------------------------------------------------------------------------------

const real = readFiles(ROOT);

describe('Dockerfile, docker-compose.yml and deploy/nginx.conf', () => {
  it('agree with each other and with the server', () => {
    expect(deploymentProblems(real)).toEqual([]);
  });

  it('the variables read from src/config.ts include the ones the deployment sets', () => {
    const names = configVariables(real['src/config.ts']);
    for (const name of ['PORT', 'HOST', 'ISSUER', 'DATABASE_URL', 'KEYS_DIR', 'TRUST_PROXY', 'TESSERA_BOOTSTRAP_ADMIN', 'ARGON2_MEMORY_KIB']) expect(names).toContain(name);
    expect(names).not.toContain('ISSUER_URL');
  });

  it('the start command is `npm start` without its build, in exec form', () => {
    const problems: string[] = [];
    const image = readImage(real.Dockerfile, problems);
    expect(image.cmd).toEqual(['node', 'dist/src/main.cjs']);
    expect((JSON.parse(real['package.json']) as { scripts: { start: string } }).scripts.start).toBe('node dist/src/main.cjs');
  });

  // Each broken copy must be caught, with the problem it introduces.
  const sub = (file: FileName, from: string | RegExp, to: string) => (files: Files): Files => {
    const changed = files[file].replace(from, to);
    if (changed === files[file]) throw new Error(`the mutation ${String(from)} no longer applies to ${file}`);
    return { ...files, [file]: changed };
  };
  const BROKEN: [string, (files: Files) => Files, RegExp][] = [
    ['a different image in the runtime stage', sub('Dockerfile', /^FROM \$\{NODE_IMAGE\}$/m, 'FROM node:22-alpine'), /same node:<major>-slim image/],
    ['a base image older than engines.node', sub('Dockerfile', 'ARG NODE_IMAGE=node:24-slim', 'ARG NODE_IMAGE=node:18-slim'), /outside package.json engines/],
    ['no compiler in the build stage', sub('Dockerfile', ' g++ ', ' '), /must install g\+\+/],
    ['a compiler in the runtime stage', sub('Dockerfile', /^WORKDIR \/app\n# The code/m, 'RUN apt-get install -y g++\nWORKDIR /app\n# The code'), /must not install a compiler/],
    ['dev dependencies shipped', sub('Dockerfile', 'npm prune --omit=dev', 'npm prune'), /must run --omit=dev/],
    ['compiled migrations not copied', sub('Dockerfile', /^COPY --from=build \/app\/dist\/migrations dist\/migrations\n/m, ''), /COPY --from=<build stage> dist\/migrations/],
    ['the CLI not copied', sub('Dockerfile', /^COPY bin bin\n/m, ''), /must COPY bin/],
    ['running as root', sub('Dockerfile', /^USER node$/m, 'USER root'), /USER <non-root>, got root/],
    ['no USER', sub('Dockerfile', /^USER node\n/m, ''), /USER <non-root>, got none/],
    ['volumes not owned by the user', sub('Dockerfile', /chown -R node:node/, 'chmod -R 755'), /chowned to node/],
    ['another stop signal', sub('Dockerfile', 'STOPSIGNAL SIGTERM', 'STOPSIGNAL SIGKILL'), /STOPSIGNAL must be SIGTERM/],
    ['nginx keeps idle connections longer than Tessera', sub('deploy/nginx.conf', 'keepalive_timeout 4s;', 'keepalive_timeout 60s;'), /keepalive_timeout must be under Tessera's 5 s/],
    ["nginx's default access log", sub('deploy/nginx.conf', /^\s*access_log[^\n]*\n/m, ''), /access_log must name a log_format/],
    ['metrics through the balancer', sub('deploy/nginx.conf', /location = \/metrics \{[^}]*\}/, ''), /\/metrics must not be served through the balancer/],
    ['nginx logs the Basic user name', sub('deploy/nginx.conf', "'$remote_addr [", "'$remote_addr $remote_user ["), /must not hold a Basic user name/],
    ['EXPOSE another port', sub('Dockerfile', 'EXPOSE 3000', 'EXPOSE 8080'), /EXPOSE 8080 does not include the server's PORT 3000/],
    ['PORT changed without EXPOSE', sub('Dockerfile', 'PORT=3000', 'PORT=4000'), /EXPOSE 3000 does not include the server's PORT 4000/],
    ['no HEALTHCHECK', sub('Dockerfile', /^HEALTHCHECK[^\n]*\n[^\n]*\n/m, ''), /needs HEALTHCHECK/],
    ['HEALTHCHECK with curl', sub('Dockerfile', 'CMD ["node", "-e", "fetch(', 'CMD ["curl", "-e", "fetch('), /ask http:\/\/127\.0\.0\.1:<PORT>\/healthz with node/],
    ['HEALTHCHECK on another path', sub('Dockerfile', "/healthz'", "/health'"), /HEALTHCHECK must ask/],
    ['CMD in shell form', sub('Dockerfile', 'CMD ["node", "dist/src/main.cjs"]', 'CMD node dist/src/main.cjs'), /CMD must be in exec form/],
    ['CMD through npm', sub('Dockerfile', 'CMD ["node", "dist/src/main.cjs"]', 'CMD ["npm", "start"]'), /is not package.json's start script/],
    ['the start script changed', sub('package.json', '"start": "node dist/src/main.cjs"', '"start": "node dist/src/server.js"'), /is not package.json's start script/],
    ['an ENTRYPOINT', sub('Dockerfile', /^CMD /m, 'ENTRYPOINT ["tini", "--"]\nCMD '), /ENTRYPOINT would run in front of CMD/],
    ['a misspelt ENV name', sub('Dockerfile', 'KEYS_DIR=/var', 'KEY_DIR=/var'), /Dockerfile ENV: KEY_DIR is not a variable src\/config.ts reads/],
    ['an ENV value the server refuses', sub('Dockerfile', 'DATABASE_URL=/var/lib/tessera/data/tessera.db', 'DATABASE_URL=file:/var/lib/tessera/data/tessera.db'), /Dockerfile ENV: the server would refuse/],
    ['HOST left at loopback', sub('Dockerfile', 'HOST=0.0.0.0', 'HOST=127.0.0.1'), /HOST must be 0.0.0.0/],
    ['the keys directory outside the VOLUMEs', sub('Dockerfile', 'KEYS_DIR=/var/lib/tessera/keys', 'KEYS_DIR=/app/keys'), /Dockerfile: \/app\/keys \(from ENV\) is not in a VOLUME/],
    ['no VOLUME', sub('Dockerfile', /^VOLUME .*\n/m, ''), /\/var\/lib\/tessera\/data \(from ENV\) is not in a VOLUME/],
    ['a service missing', sub('docker-compose.yml', /^ {2}tessera-b:/m, '  tessera-c:'), /no service tessera-b/],
    ['the default service in a profile', sub('docker-compose.yml', /^( {2}tessera:\n {4}<<: \*tessera\n)/m, '$1    profiles: [single]\n'), /tessera must be in the default profile/],
    ['postgres outside the scale profile', sub('docker-compose.yml', /^( {4}image: postgres:\d+\n) {4}profiles: \[scale\]\n/m, '$1'), /postgres must be in profile scale/],
    ['a misspelt compose variable', sub('docker-compose.yml', 'TRUST_PROXY: "true"', 'TRUSTED_PROXY: "true"'), /tessera-a: TRUSTED_PROXY is not a variable src\/config.ts reads/],
    ['a compose value the server refuses', sub('docker-compose.yml', 'TRUST_PROXY: "true"', 'TRUST_PROXY: "yes"'), /tessera-a: the server would refuse this configuration: .*TRUST_PROXY/s],
    ['ISSUER not the published port', sub('docker-compose.yml', '${ISSUER:-http://localhost:3000}', '${ISSUER:-http://localhost:3001}'), /ISSUER http:\/\/localhost:3001 is not the published port 3000/],
    ['a variable without a default', sub('docker-compose.yml', '${ISSUER:-http://localhost:3000}', '${ISSUER}'), /\$\{ISSUER\} has no default/],
    ['the server port not published', sub('docker-compose.yml', '"127.0.0.1:3000:3000"', '"127.0.0.1:3000:3001"'), /the server's port 3000 is not published/],
    ['the database outside the data volume', sub('docker-compose.yml', /^ {6}- data:\/var\/lib\/tessera\/data\n/m, ''), /tessera: \/var\/lib\/tessera\/data is not on a named volume/],
    ['the keys on a bind mount', sub('docker-compose.yml', '- keys:/var/lib/tessera/keys', '- ./keys:/var/lib/tessera/keys'), /tessera: \/var\/lib\/tessera\/keys is not on a named volume/],
    ['an undeclared volume', sub('docker-compose.yml', /^ {2}pgdata:\n/m, ''), /postgres mounts pgdata, which is not a named volume/],
    ['KEYS_DIR moved without its volume', sub('docker-compose.yml', /^( {6})KEYS_DIR: \/var\/lib\/tessera\/keys\n( {6}TRUST_PROXY)/m, '$1KEYS_DIR: /var/lib/tessera/other\n$2'), /tessera-a: \/var\/lib\/tessera\/other is not on a named volume/],
    ['a Tessera service without a healthcheck', sub('docker-compose.yml', /^( {2}tessera-b:\n {4}<<: \*tessera\n)/m, '$1    healthcheck:\n      disable: true\n'), /tessera-b: no healthcheck/],
    ['a healthcheck that drifted from the Dockerfile', sub('docker-compose.yml', 'timeout(4000)', 'timeout(1000)'), /healthcheck differs from the Dockerfile's HEALTHCHECK/],
    ['no restart policy', sub('docker-compose.yml', /^ {2}restart: unless-stopped\n/m, ''), /tessera: no restart policy/],
    ['a command that is not the start script', sub('docker-compose.yml', /^( {2}tessera:\n {4}<<: \*tessera\n)/m, '$1    command: ["node", "dist/src/cli/main.js"]\n'), /tessera: command \["node","dist\/src\/cli\/main.js"\] is not the image's CMD/],
    ['an entrypoint', sub('docker-compose.yml', /^( {2}tessera:\n {4}<<: \*tessera\n)/m, '$1    entrypoint: ["sh", "-c"]\n'), /tessera: entrypoint would run in front/],
    ['depends_on without a condition', sub('docker-compose.yml', /^( {4}depends_on:\n {6}tessera-a:\n) {8}condition: service_healthy\n/m, '$1        condition: service_started\n'), /proxy depends on tessera-a with condition service_started/],
    ['depends_on in the short form', sub('docker-compose.yml', /^( {2}tessera-b:[\s\S]*? {4}depends_on:\n) {6}postgres:\n {8}condition: service_healthy\n/m, '$1      - postgres\n'), /tessera-b depends on postgres with condition \(none\)/],
    ['a dependency without a healthcheck', sub('docker-compose.yml', /^ {4}healthcheck:\n {6}# Over TCP[^\n]*\n {6}test: \["CMD", "pg_isready"[^\n]*\n/m, '    healthcheck:\n      disable: true\n'), /postgres has no healthcheck/],
    ['postgres checked without pg_isready', sub('docker-compose.yml', '"pg_isready", "-h"', '"psql", "-h"'), /postgres needs a pg_isready healthcheck/],
    ['postgres without its volume', sub('docker-compose.yml', '- pgdata:/var/lib/postgresql/data', '- pgdata:/var/lib/postgresql/elsewhere'), /postgres needs a named volume/],
    ['a replica on SQLite', sub('docker-compose.yml', /^ {4}environment: \*scaled\n/m, '    environment:\n      ISSUER: http://localhost:8080\n'), /the scale profile needs two Tessera instances on PostgreSQL, found 1/],
    ['a replica not waiting for its database', sub('docker-compose.yml', /^( {2}tessera-b:[\s\S]*?) {4}depends_on:\n {6}postgres:\n {8}condition: service_healthy\n/m, '$1'), /tessera-b: DATABASE_URL names postgres, which it does not wait for/],
    ['a replica without TRUST_PROXY', sub('docker-compose.yml', 'TRUST_PROXY: "true"', 'TRUST_PROXY: "false"'), /needs TRUST_PROXY=true/],
    ['replicas with separate keys', sub('docker-compose.yml', /(tessera-b:[\s\S]*?)- scale-keys:/, '$1- keys:'), /must share one keys volume/],
    ['a scaled ISSUER that is not the proxy', sub('docker-compose.yml', '${SCALE_ISSUER:-http://localhost:8080}', '${SCALE_ISSUER:-http://localhost:3000}'), /scaled ISSUER http:\/\/localhost:3000 is not the proxy's published port 8080/],
    ['the proxy not waiting for a replica', sub('docker-compose.yml', /^ {6}tessera-b:\n {8}condition: service_healthy\n/m, ''), /proxy: does not wait for tessera-b/],
    ['another nginx config mounted', sub('docker-compose.yml', './deploy/nginx.conf', './nginx.conf'), /must mount \.\/deploy\/nginx\.conf/],
    ['nginx without one replica', sub('deploy/nginx.conf', /^\s*server tessera-b:3000;\n/m, '\n'), /upstream tessera-a:3000 is not the scaled instances tessera-a:3000, tessera-b:3000/],
    ['nginx on the wrong upstream port', sub('deploy/nginx.conf', 'server tessera-a:3000;', 'server tessera-a:8080;'), /upstream tessera-a:8080, tessera-b:3000 is not/],
    ['nginx without X-Forwarded-For', sub('deploy/nginx.conf', /^\s*proxy_set_header X-Forwarded-For .*\n/m, '\n'), /must pass X-Forwarded-For/],
    ['nginx listening on an unpublished port', sub('deploy/nginx.conf', 'listen 80;', 'listen 8081;'), /nginx listens on 8081, which is not published/],
    ['a variable src/config.ts no longer reads', sub('src/config.ts', "parseBoolean('TRUST_PROXY', env.TRUST_PROXY", "parseBoolean('TRUSTED_PROXY', env.TRUSTED_PROXY"), /tessera-a: TRUST_PROXY is not a variable src\/config.ts reads/],
  ];
  it.each(BROKEN)('catch %s', (_name, mutate, expected) => {
    expect(deploymentProblems(mutate(real)).join('\n')).toMatch(expected);
  });
});

// ---------------------------------------------------------------------------------------------

describe("the image's start command, run outside Docker", () => {
  const problems: string[] = [];
  const image = readImage(real.Dockerfile, problems);
  const composeEnv = serviceEnv(parseCompose(real['docker-compose.yml'], problems).services?.tessera ?? {});
  let dir: string;
  let env: Record<string, string>;
  let server: RunningServer | undefined;

  beforeAll(async () => {
    expect(problems).toEqual([]);
    dir = mkdtempSync(join(tmpdir(), 'tessera-image-'));
    // The container's environment: the image's ENV, then the compose service's; its state
    // directories (named volumes in the container) moved under a temporary directory, created as
    // Docker creates them from the image; a free port instead of 3000.
    env = { ...image.env, ...composeEnv };
    for (const name of ['DATABASE_URL', 'KEYS_DIR'] as const) env[name] = join(dir, env[name]!);
    for (const volume of stateDirs(env)) mkdirSync(volume, { recursive: true, mode: 0o700 });
    env.PORT = String(await freePort());
    expect(image.cmd).toEqual(['node', 'dist/src/main.cjs']); // what startServer spawns, from ROOT (the image's WORKDIR holds the same tree)
    server = await startServer(env);
  });

  afterAll(async () => {
    if (server && server.process.exitCode === null && server.process.signalCode === null) server.process.kill('SIGKILL');
    await server?.exited;
    rmSync(dir, { recursive: true, force: true });
  });

  const base = () => `http://127.0.0.1:${env.PORT}`;

  it('serves discovery for the compose ISSUER', async () => {
    const res = await fetch(`${base()}/.well-known/oauth-authorization-server`);
    expect(res.status).toBe(200);
    expect(((await res.json()) as { issuer: string }).issuer).toBe(composeEnv.ISSUER);
  });

  it('prints the bootstrap admin once on stderr (docker compose logs tessera), and keeps its state in the volumes', () => {
    expect(server!.stderr.join('')).toMatch(/bootstrap admin client \(shown once\)[\s\S]*client_secret: tsec_/);
    expect(existsSync(env.DATABASE_URL!)).toBe(true);
    expect(readdirSync(env.KEYS_DIR!).filter((f) => f.endsWith('.json'))).toHaveLength(1);
  });

  const healthcheck = (port: string) =>
    new Promise<number>((resolve) => {
      const [command, ...args] = image.healthcheck!;
      expect(command).toBe('node');
      execFile(process.execPath, args, { env: { PATH: process.env.PATH, PORT: port }, timeout: 10_000 }, (err) => resolve(err ? Number((err as { code?: number }).code ?? 1) : 0));
    });

  it('the HEALTHCHECK command fails when nothing answers', async () => {
    expect(await healthcheck(String(await freePort()))).not.toBe(0);
  });

  it('the HEALTHCHECK command passes against the server', async () => {
    expect(await healthcheck(env.PORT!)).toBe(0);
  });

  it('exits 0 on the image STOPSIGNAL', async () => {
    const signal = image.final.filter((i) => i.keyword === 'STOPSIGNAL').at(-1)!.args as NodeJS.Signals;
    server!.process.kill(signal);
    expect(await server!.exited).toBe(0);
    expect(server!.stdout.join('\n')).toContain('"msg":"stopped"');
  });
});
