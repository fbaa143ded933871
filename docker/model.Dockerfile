# The model image: every pipeline stage, one per container run (docs/model/docker.md).
#   make docker-model-build                  docker build -f docker/model.Dockerfile -t tutoria-mlops-model:latest .
#   docker run IMAGE <stage> [args...]       runs scripts/<stage>.ts with its deno.json permission set
# The Deno version is the one the Makefile installs (DENO_VERSION); docker/docker_test.ts keeps them equal.
FROM denoland/deno:debian-2.9.6

ENV DENO_NO_UPDATE_CHECK=1 \
    DENO_NO_PROMPT=1

WORKDIR /app

# Dependencies first, from the lockfile only: this layer is rebuilt when deno.json or deno.lock change, not on
# every code change. `deno ci` refuses a missing or stale lockfile, so the image gets exactly the locked
# versions. With "nodeModulesDir": "none" the packages land in DENO_DIR (/deno-dir), readable by every user.
COPY deno.json deno.lock ./
RUN deno ci

COPY lib/ ./lib/
COPY scripts/ ./scripts/
COPY --chmod=0755 docker/entrypoint.sh ./docker/entrypoint.sh
# Resolves every stage's module graph against the cache now, so a stage that imports something the lockfile
# lacks fails the build instead of the first run (stages run with --cached-only and no network for npm).
RUN deno install --frozen --entrypoint scripts/*.ts \
    && mkdir -p data \
    && chown deno:deno data

# Code and dependencies stay root-owned (read-only for the stages); only /app/data, the mount point of the
# data volume, belongs to the runtime user, so a fresh named volume starts out writable by uid 1993.
USER deno
VOLUME ["/app/data"]

# tini (PID 1) forwards SIGTERM to deno, which removes its partial outputs and exits 130.
ENTRYPOINT ["/tini", "--", "/app/docker/entrypoint.sh"]
CMD ["--help"]
