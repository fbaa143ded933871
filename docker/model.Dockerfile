# The model image: every pipeline stage, one per container run (docs/model/docker.md).
#   make docker-model-build                  docker build -f docker/model.Dockerfile -t tutoria-mlops-model:latest .
#   docker run IMAGE <stage> [args...]       runs scripts/<stage>.ts with its deno.json permission set
# The Deno version is the one the Makefile installs (DENO_VERSION); docker/docker_test.ts keeps them equal.
# Plain Dockerfile syntax only (no COPY --chmod, no RUN --mount): the classic builder, BuildKit, Podman and
# Buildah all build it.
FROM denoland/deno:debian-2.9.6

ENV DENO_NO_UPDATE_CHECK=1 \
    DENO_NO_PROMPT=1

WORKDIR /app

# A proxy's CA, if you put one there (docker/certs/README.md), trusted while the packages download.
COPY docker/certs/ ./docker/certs/

# Dependencies first, from the lockfile only: this layer is rebuilt when deno.json, deno.lock or the package
# list change, not on every code change. docker/model_deps.ts names only what the stages import, and
# docker/runtime_lock.ts narrows the image's deno.json and deno.lock to those packages (no test, benchmark or
# browser packages); --frozen then refuses anything but the locked versions. With "nodeModulesDir": "none" the
# packages land in DENO_DIR (/deno-dir), readable by every user.
COPY deno.json deno.lock ./
COPY docker/model_deps.ts docker/runtime_lock.ts ./docker/
RUN deno run -q --no-config --no-lock --allow-read=. --allow-write=deno.json,deno.lock \
        docker/runtime_lock.ts docker/model_deps.ts \
    && if [ -s docker/certs/extra-ca.pem ]; then export DENO_CERT=/app/docker/certs/extra-ca.pem; fi \
    && deno install --frozen --entrypoint docker/model_deps.ts

COPY lib/ ./lib/
COPY scripts/ ./scripts/
COPY docker/entrypoint.sh docker/healthcheck.ts ./docker/
# Resolves every stage's module graph against that cache only (--cached-only), so a stage that imports a
# package missing from docker/model_deps.ts fails the build instead of its first run.
RUN chmod 0755 docker/entrypoint.sh \
    && deno install --frozen --cached-only --entrypoint scripts/ingest.ts scripts/split_batches.ts \
        scripts/preprocess_batch.ts scripts/preprocess_test.ts scripts/train.ts scripts/evaluate.ts \
        scripts/predict.ts scripts/serve.ts \
    && mkdir -p data \
    && chown deno:deno data

# Code and dependencies stay root-owned (read-only for the stages); only /app/data, the mount point of the
# data volume, belongs to the runtime user, so a fresh named volume starts out writable by uid 1993.
USER deno
VOLUME ["/app/data"]

# tini (PID 1) forwards SIGINT and SIGTERM to deno, which removes its partial outputs and exits 130.
ENTRYPOINT ["/tini", "--", "/app/docker/entrypoint.sh"]
CMD ["--help"]
