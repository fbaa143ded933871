# LOCAL STAND-IN for denoland/deno:debian-<version>, built by docker/stand-in/base_images.sh only when no
# registry answers. Not the upstream image: a Debian bookworm minbase plus the Deno binary from npm, laid out
# like the official image (Deno at /usr/bin/deno, tini at /tini, user deno uid 1993, DENO_DIR=/deno-dir/).
ARG BASE
FROM ${BASE}
ARG DENO_VERSION
COPY deno /usr/bin/deno
COPY docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
RUN cp /usr/bin/tini-static /tini \
    && useradd --uid 1993 --user-group deno \
    && mkdir /deno-dir/ \
    && chown deno:deno /deno-dir/ \
    && deno --version
ENV DENO_DIR=/deno-dir/ \
    DENO_INSTALL_ROOT=/usr/local \
    DENO_VERSION=${DENO_VERSION}
LABEL tutoria-mlops.stand-in="denoland/deno:debian-${DENO_VERSION}" \
    org.opencontainers.image.description="LOCAL STAND-IN for denoland/deno:debian-${DENO_VERSION} (Debian bookworm minbase + Deno from npm), not the upstream image"
ENTRYPOINT ["/tini", "--", "docker-entrypoint.sh"]
CMD ["eval", "console.log('Welcome to Deno! (local stand-in image)')"]
