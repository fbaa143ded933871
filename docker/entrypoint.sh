#!/bin/sh
# Entry point of the model and API images (ENTRYPOINT ["/tini", "--", "/app/docker/entrypoint.sh"]):
#
#   docker run IMAGE <stage> [args...]     e.g.  docker run IMAGE preprocess-batch 3
#
# runs `deno run -q --frozen --cached-only -P=<stage> [--allow-net=...] scripts/<stage>.ts [args...]` from the
# current directory (WORKDIR /app in the image), i.e. the stage's task in deno.json with that stage's
# permission set and nothing more. `split-batches` and `split_batches` both work.
#
# Network grant: a CLI --allow-net replaces the set's "net" list, so it is added only where the task adds one:
#   - MLflow stages (their task has $MLFLOW_ALLOW_NET): --allow-net=<host:port of MLFLOW_TRACKING_URI>, because
#     the tracking server's address is only known at run time (host.docker.internal, a compose service, a
#     cluster DNS name), plus the listen address for serve (HOST:PORT, default 0.0.0.0:8000);
#     MLFLOW_ALLOW_NET=--allow-net=... overrides it.
#   - ingest (its task has $INGEST_ALLOW_NET): INGEST_ALLOW_NET=--allow-net=... if set, for a --source URL.
#
# Waiting for MLflow: with MLFLOW_WAIT_SECONDS=N (compose.yaml sets it), an MLflow stage first waits up to N
# seconds, backing off, until GET <MLFLOW_TRACKING_URI>/health answers, so that a stage or the API started
# together with MLflow neither fails nor spins through restarts while the server starts.
#
# A proxy's CA: DENO_CERT defaults to docker/certs/extra-ca.pem when the image was built with one
# (docker/certs/README.md), for an MLflow reached through the same proxy.
#
# Environment: DENO (the deno binary, default `deno`; tests run this script locally with the project's Deno),
# MLFLOW_TRACKING_URI, MLFLOW_ALLOW_NET, MLFLOW_WAIT_SECONDS, INGEST_ALLOW_NET, and HOST and PORT for serve.
# Exit codes: the stage's own; 2 for an unknown stage or an unusable MLFLOW_TRACKING_URI or
# MLFLOW_WAIT_SECONDS; 1 when MLflow did not answer within MLFLOW_WAIT_SECONDS.
set -eu

# Keep in step with deno.json "tasks" (docker/docker_test.ts checks both lists).
STAGES="ingest split_batches preprocess_batch preprocess_test train evaluate predict serve"
MLFLOW_STAGES="train evaluate predict serve"

usage() {
  cat <<EOF
usage: docker run IMAGE <stage> [args...]   (runs scripts/<stage>.ts with its deno.json permission set)
stages: $(echo "$STAGES" | sed 's/ /, /g')
a stage's own help: docker run IMAGE <stage> --help
EOF
}

fail() {
  echo "error: $1" >&2
  exit 2
}

contains() {
  case " $1 " in *" $2 "*) return 0 ;; esac
  return 1
}

# Prints host:port of an http(s) URL: the exact grant Deno's --allow-net needs for that server. The scheme's
# default port is spelled out so the grant stays as narrow as the URL.
url_host_port() {
  case $1 in
  http://*) scheme_port=80 ;;
  https://*) scheme_port=443 ;;
  *) return 1 ;;
  esac
  authority=${1#*://}
  authority=${authority%%/*}
  authority=${authority%%\?*}
  authority=${authority%%#*}
  authority=${authority##*@} # drop user:password@
  [ -n "$authority" ] || return 1
  case $authority in
  \[*\]:*) echo "$authority" ;;           # [::1]:5000
  \[*\]) echo "$authority:$scheme_port" ;; # [::1]
  *:*) echo "$authority" ;;
  *) echo "$authority:$scheme_port" ;;
  esac
}

# A flag taken from the environment must be an --allow-net grant and nothing else (never -A).
net_flag_from_env() {
  case $2 in
  --allow-net=?*) case $2 in *" "* | *"	"*) fail "$1 must be one --allow-net=host:port,... flag without spaces, got \"$2\"" ;; esac ;;
  *) fail "$1 must look like --allow-net=host:port, got \"$2\"" ;;
  esac
  echo "$2"
}

[ $# -gt 0 ] || {
  usage >&2
  exit 2
}
case $1 in
-h | --help | help)
  usage
  exit 0
  ;;
esac

stage=$(echo "$1" | tr - _)
shift
contains "$STAGES" "$stage" || fail "unknown stage \"$stage\"; expected one of: $(echo "$STAGES" | sed 's/ /, /g')"

net=""
if contains "$MLFLOW_STAGES" "$stage"; then
  if [ -n "${MLFLOW_ALLOW_NET:-}" ]; then
    net=$(net_flag_from_env MLFLOW_ALLOW_NET "$MLFLOW_ALLOW_NET")
  elif [ -n "${MLFLOW_TRACKING_URI:-}" ]; then
    host_port=$(url_host_port "$MLFLOW_TRACKING_URI") ||
      fail "MLFLOW_TRACKING_URI must be an http(s):// URL such as http://mlflow:5000, got \"$MLFLOW_TRACKING_URI\""
    net="--allow-net=$host_port"
    # serve also listens: the same address its permission set grants by default (0.0.0.0:8000).
    [ "$stage" != serve ] || net="$net,${HOST:-0.0.0.0}:${PORT:-8000}"
  fi
elif [ "$stage" = ingest ] && [ -n "${INGEST_ALLOW_NET:-}" ]; then
  net=$(net_flag_from_env INGEST_ALLOW_NET "$INGEST_ALLOW_NET")
fi

# The preprocess stages run with a bounded V8 heap, exactly as their deno tasks do (deno.json; a docker test
# keeps the two equal): their live heap is a few tens of MB, and without the cap V8 grows to 300-400 MB.
v8=""
case $stage in
preprocess_batch | preprocess_test) v8="--v8-flags=--max-semi-space-size=2,--max-old-space-size=512" ;;
esac

# The folders under data/ each stage writes (its "write" grant in deno.json; docker/docker_test.ts keeps the two
# equal). A bind-mounted data folder owned by another user fails there with a bare "Permission denied" from
# deep inside the stage; this says whose folder it is and what to do, before anything runs.
case $stage in
ingest) write_dirs="data/raw data/downloads" ;;
split_batches) write_dirs="data/batches data/processed" ;;
preprocess_batch | preprocess_test) write_dirs="data/processed" ;;
*) write_dirs="" ;;
esac
for dir in $write_dirs; do
  [ -d "$dir" ] || dir=$(dirname "$dir")
  [ -d "$dir" ] && [ ! -w "$dir" ] || continue
  echo "error: $(pwd)/$dir belongs to uid $(stat -c %u "$dir") (gid $(stat -c %g "$dir")) and this runs as uid $(id -u), which may not write it; give the folder to uid $(id -u) (on the host: chown -R $(id -u):$(id -g) <the folder mounted at $(pwd)/data>) or run as its owner (docker run --user, or DOCKER_USER=uid:gid for the make targets)" >&2
  exit 1
done

if [ -z "${DENO_CERT:-}" ] && [ -s docker/certs/extra-ca.pem ]; then
  DENO_CERT=$(pwd)/docker/certs/extra-ca.pem
  export DENO_CERT
fi

# Polls MLflow's /health (with the health-check script, the only HTTP client in the image) for up to $1 s.
wait_for_mlflow() {
  limit=$1 waited=0 delay=1
  url="${MLFLOW_TRACKING_URI%/}/health"
  until "${DENO:-deno}" run -q --frozen --cached-only "--allow-net=$host_port" docker/healthcheck.ts "$url" 2>/dev/null; do
    [ "$waited" -lt "$limit" ] || {
      echo "error: MLflow at $MLFLOW_TRACKING_URI did not answer within ${limit}s (MLFLOW_WAIT_SECONDS)" >&2
      exit 1
    }
    [ "$waited" -gt 0 ] || echo "waiting up to ${limit}s for MLflow at $MLFLOW_TRACKING_URI" >&2
    sleep "$delay"
    waited=$((waited + delay))
    delay=$((delay * 2))
    [ "$delay" -le 8 ] || delay=8
  done
  [ "$waited" -eq 0 ] || echo "MLflow answers after ${waited}s" >&2
}

wait_seconds=${MLFLOW_WAIT_SECONDS:-0}
case $wait_seconds in
'' | *[!0-9]*) fail "MLFLOW_WAIT_SECONDS must be a number of seconds, got \"$wait_seconds\"" ;;
esac
asks_help=no
for arg in "$@"; do
  case $arg in -h | --help) asks_help=yes ;; esac
done
if [ "$wait_seconds" -gt 0 ] && [ "$asks_help" = no ] && contains "$MLFLOW_STAGES" "$stage" &&
  [ -n "${MLFLOW_TRACKING_URI:-}" ]; then
  host_port=$(url_host_port "$MLFLOW_TRACKING_URI") ||
    fail "MLFLOW_TRACKING_URI must be an http(s):// URL such as http://mlflow:5000, got \"$MLFLOW_TRACKING_URI\""
  wait_for_mlflow "$wait_seconds"
fi

# exec: tini's child becomes deno itself, so SIGINT or SIGTERM (Ctrl-C, `docker stop`) reaches the stage, which
# removes its partial outputs and exits 130.
exec "${DENO:-deno}" run -q --frozen --cached-only "-P=$stage" ${v8:+"$v8"} ${net:+"$net"} "scripts/$stage.ts" "$@"
