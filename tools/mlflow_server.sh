#!/usr/bin/env bash
# Starts or stops a local MLflow tracking server in the background. Called by the Makefile
# (`make mlflow`, `make mlflow-test`, `make mlflow-stop`, `make mlflow-test-stop`); runnable by hand too.
#
#   tools/mlflow_server.sh start --url http://127.0.0.1:5500 --data mlflow-data [--mlflow .venv/bin/mlflow]
#   tools/mlflow_server.sh stop  --url http://127.0.0.1:5500 --data mlflow-data
#
# start: does nothing when a server already answers URL/health, unless it was started from DATA on
#   another interface than MLFLOW_HOST asks for (then it says so and fails); otherwise, for a local URL,
#   starts `mlflow server` on the URL's port with a SQLite store (DATA/mlflow.db) and proxied artifacts
#   (DATA/artifacts), writes DATA/server.pid, DATA/server.host and DATA/server.log, and waits until
#   /health answers (MLFLOW_START_TIMEOUT seconds, default 120: the first start runs the migrations).
# stop: stops the server recorded in DATA/server.pid (its whole process group: uvicorn workers too).
#
# Environment: MLFLOW_HOST (interface to bind, default 127.0.0.1), MLFLOW_ALLOWED_HOSTS (Host headers
# the server accepts), MLFLOW_WORKERS (default 2: each worker is a full Python process and CI machines
# have 2 cores), MLFLOW_START_TIMEOUT.
set -euo pipefail

die() {
  echo "error: $*" >&2
  exit 1
}

usage() {
  sed -n '5,6p' "$0" | sed 's/^# *//' >&2
  exit 2
}

action=${1:-}
[[ $action == start || $action == stop ]] || usage
shift
url=""
data=""
mlflow_bin=".venv/bin/mlflow"
while (($#)); do
  case $1 in
  --url) url=${2:-} && shift 2 ;;
  --data) data=${2:-} && shift 2 ;;
  --mlflow) mlflow_bin=${2:-} && shift 2 ;;
  *) usage ;;
  esac
done
[[ -n $data ]] || die "--data expects a folder"
[[ -n $url ]] || die "--url expects the server's URL, e.g. http://127.0.0.1:5500"
url=${url%/}
# Only a plain-http URL on this machine can be started here: http://HOST[:PORT] -> PORT (default 80).
port=""
if [[ $url =~ ^http://(127\.0\.0\.1|localhost|\[::1\])(:([0-9]+))?$ ]]; then
  port=${BASH_REMATCH[3]:-80}
fi

mkdir -p "$data"
data=$(cd "$data" && pwd)
pid_file="$data/server.pid"
host_file="$data/server.host"
log_file="$data/server.log"

# /health is exempt from MLflow's Host-header check, so it tells whether *a* server listens there.
healthy() {
  curl --silent --fail --max-time 2 --output /dev/null "$url/health"
}

# Whether a process runs; a zombie (exited, not yet reaped: a container without an init) does not.
alive() {
  kill -0 "$1" 2>/dev/null && [[ $(ps -o stat= -p "$1" 2>/dev/null) != Z* ]]
}

recorded_pid() {
  [[ -s $pid_file ]] || return 1
  local pid
  pid=$(<"$pid_file")
  [[ $pid =~ ^[0-9]+$ ]] && alive "$pid" || return 1
  # After a reboot the id may belong to another program: never signal that one.
  if [[ -r /proc/$pid/cmdline ]] && ! tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q mlflow; then
    return 1
  fi
  echo "$pid"
}

start() {
  command -v curl >/dev/null || die "curl is needed to poll $url/health; install curl"
  if healthy; then
    local listening
    listening=$(cat "$host_file" 2>/dev/null || true)
    # A server started for 127.0.0.1 cannot be reached from containers; "already answers" would hide that.
    if [[ -n ${MLFLOW_HOST:-} && -n $listening && $listening != "$MLFLOW_HOST" ]] && recorded_pid >/dev/null; then
      die "MLflow already answers at $url but listens on $listening, not $MLFLOW_HOST; stop it (make mlflow-stop) and start it again with MLFLOW_HOST=$MLFLOW_HOST"
    fi
    echo "MLflow already answers at $url${listening:+ (listening on $listening)}"
    return 0
  fi
  [[ -n $port ]] ||
    die "nothing answers $url/health, and only a local http://127.0.0.1:PORT or http://localhost:PORT server can be started here; start that server, or unset MLFLOW_TRACKING_URI"
  local pid
  if ! pid=$(recorded_pid); then
    [[ -x $mlflow_bin ]] || die "$mlflow_bin not found; run make mlflow (it installs MLflow into .venv)"
    mkdir -p "$data/artifacts"
    echo "starting MLflow at $url (data: $data, log: $log_file)"
    local python
    python=$(dirname "$mlflow_bin")/python
    # A new session makes the server a process-group leader, so `stop` can end its uvicorn workers
    # by that one id. Python's os.setsid works where the setsid(1) binary is missing (macOS).
    # Descriptors above 2 are closed: a server started under `flock LOCK make test` would otherwise
    # inherit the lock and hold it for as long as it runs, long after the tests that took it.
    echo "--- $(date -u +%FT%TZ) start port=$port" >>"$log_file"
    # MLflow 3 starts a pool of background job consumers (about ten Python processes, 2 GB of memory)
    # for server-side jobs this pipeline never submits; MLFLOW_SERVER_ENABLE_JOB_EXECUTION=true restores them.
    MLFLOW_SERVER_ENABLE_JOB_EXECUTION="${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}" \
      "$python" -c 'import os, sys; os.setsid(); os.closerange(3, 65536); os.execvp(sys.argv[1], sys.argv[1:])' \
      "$mlflow_bin" server \
      --host "${MLFLOW_HOST:-127.0.0.1}" --port "$port" \
      --workers "${MLFLOW_WORKERS:-2}" \
      --backend-store-uri "sqlite:///$data/mlflow.db" \
      --artifacts-destination "$data/artifacts" \
      --serve-artifacts \
      --allowed-hosts "${MLFLOW_ALLOWED_HOSTS:-localhost,localhost:*,127.0.0.1,127.0.0.1:*,host.docker.internal,host.docker.internal:*,host.containers.internal,host.containers.internal:*,mlflow,mlflow:*}" \
      </dev/null >>"$log_file" 2>&1 &
    pid=$!
    echo "$pid" >"$pid_file"
    echo "${MLFLOW_HOST:-127.0.0.1}" >"$host_file"
  else
    echo "MLflow (pid $pid) is starting at $url; waiting"
  fi
  local timeout=${MLFLOW_START_TIMEOUT:-120} waited=0
  until healthy; do
    if ! alive "$pid"; then
      rm -f "$pid_file" "$host_file"
      tail -n 15 "$log_file" >&2 || true
      die "MLflow exited while starting on port $port (is the port taken?); full log: $log_file"
    fi
    if ((waited >= timeout)); then
      # A server that never became healthy would hold the port and confuse the next start: end it.
      kill -TERM -- "-$pid" 2>/dev/null || true
      rm -f "$pid_file" "$host_file"
      die "MLflow did not answer $url/health within ${timeout}s (stopped it); see $log_file"
    fi
    sleep 1
    waited=$((waited + 1))
  done
  echo "MLflow is up at $url (pid $pid, ${waited}s)"
}

stop() {
  local pid
  if ! pid=$(recorded_pid); then
    rm -f "$pid_file" "$host_file"
    if healthy; then
      echo "a server answers at $url but it was not started from $data; leaving it alone" >&2
    else
      echo "no MLflow server recorded in $pid_file"
    fi
    return 0
  fi
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  local waited=0
  while alive "$pid" && ((waited < 20)); do
    sleep 0.5
    waited=$((waited + 1))
  done
  if alive "$pid"; then
    echo "MLflow (pid $pid) ignored SIGTERM for 10s; sending SIGKILL" >&2
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pid_file" "$host_file"
  echo "stopped MLflow at $url (pid $pid)"
}

"$action"
