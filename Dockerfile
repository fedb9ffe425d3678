# Tessera: one image for a single SQLite instance and for several instances on PostgreSQL.
#   docker build -t tessera .
#   docker run -p 127.0.0.1:3000:3000 tessera      (or: docker compose up, see docker-compose.yml)

ARG NODE_IMAGE=node:24-slim

# ---- build: compile the native modules and the TypeScript, then drop the dev dependencies ----
FROM ${NODE_IMAGE} AS build
# argon2 and better-sqlite3 compile here when no prebuilt binary fits; the runtime image has no compiler.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: the root "prepare" script would build before the sources are copied (and this
# layer is cached until the lockfile changes). The two native modules, the only dependencies with
# install scripts, then run theirs (package.json "allowScripts" approves them for npm 11).
RUN npm ci --ignore-scripts --no-audit --no-fund \
 && npm rebuild argon2 better-sqlite3
COPY tsconfig.json tsconfig.build.json ./
COPY src src
COPY migrations migrations
# Pruning only deletes packages, so it needs no scripts; the native modules keep their binaries.
RUN npm run build \
 && npm prune --omit=dev --ignore-scripts --no-audit --no-fund

# ---- runtime: production node_modules, the compiled server and migrations, the CLI ----
FROM ${NODE_IMAGE}
ENV HOST=0.0.0.0 \
    PORT=3000 \
    DATABASE_URL=/var/lib/tessera/data/tessera.db \
    KEYS_DIR=/var/lib/tessera/keys
# Named volumes mounted here start with this ownership and mode (keys: 0700, as Tessera requires).
RUN mkdir -p /var/lib/tessera/data /var/lib/tessera/keys \
 && chown -R node:node /var/lib/tessera \
 && chmod 700 /var/lib/tessera/data /var/lib/tessera/keys
WORKDIR /app
# The code stays owned by root: the server cannot modify itself.
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules node_modules
COPY --from=build /app/dist/src dist/src
COPY --from=build /app/dist/migrations dist/migrations
COPY bin bin
VOLUME ["/var/lib/tessera/data", "/var/lib/tessera/keys"]
USER node
EXPOSE 3000
# SIGTERM: stop accepting, finish in-flight requests, flush the audit log, close the database, exit 0.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 3000) + '/healthz', { signal: AbortSignal.timeout(4000) }).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# What `npm start` runs, without its prestart build.
CMD ["node", "dist/src/main.cjs"]
