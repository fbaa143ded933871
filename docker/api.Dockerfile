# The API image: scripts/serve.ts on port 8000, scoring with a model version it downloads from MLflow.
#   make docker-api-build      docker build -f docker/api.Dockerfile -t tutoria-mlops-api:latest .
#   make docker-api-run        model_version=V|latest|@alias, MLflow on the host
# The same first layers as model.Dockerfile up to the packages, which are the server's only. The API runs with
# the `serve` permission set: no write, no run; net for its port and MLflow only. Plain Dockerfile syntax only,
# as in model.Dockerfile. Podman and Buildah keep the HEALTHCHECK only in the Docker image format
# (`--format docker`, which the make targets pass).
FROM denoland/deno:debian-2.9.6

ENV DENO_NO_UPDATE_CHECK=1 \
    DENO_NO_PROMPT=1

WORKDIR /app

COPY docker/certs/ ./docker/certs/

COPY deno.json deno.lock ./
COPY docker/api_deps.ts docker/runtime_lock.ts ./docker/
RUN deno run -q --no-config --no-lock --allow-read=. --allow-write=deno.json,deno.lock \
        docker/runtime_lock.ts docker/api_deps.ts \
    && if [ -s docker/certs/extra-ca.pem ]; then export DENO_CERT=/app/docker/certs/extra-ca.pem; fi \
    && deno install --frozen --entrypoint docker/api_deps.ts

COPY lib/ ./lib/
COPY scripts/ ./scripts/
COPY docker/entrypoint.sh docker/healthcheck.ts ./docker/
RUN chmod 0755 docker/entrypoint.sh \
    && deno install --frozen --cached-only --entrypoint scripts/serve.ts docker/healthcheck.ts

USER deno
EXPOSE 8000

# Deno instead of curl (the image has none), allowed to reach the API's own port and nothing else.
# 4 retries 30 s apart leave the first model download two minutes; no --start-period, which
# dockerfilelint 1.8.0 predates and rejects.
HEALTHCHECK --interval=30s --timeout=5s --retries=4 \
    CMD ["deno", "run", "-q", "--frozen", "--cached-only", "--allow-net=127.0.0.1:8000", "docker/healthcheck.ts", "http://127.0.0.1:8000/health"]

ENTRYPOINT ["/tini", "--", "/app/docker/entrypoint.sh", "serve"]
CMD ["--model_version", "latest"]
