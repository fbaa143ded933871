#!/usr/bin/env bash
# Makes the base images the project's Dockerfiles and compose.yaml name available to a container engine
# (`make docker-base-images`; `make docker-e2e` calls it first):
#
#   docker/stand-in/base_images.sh --engine docker|podman|PATH --deno-image REF --deno-bin FILE
#       [--mlflow-image REF --requirements FILE] [--ca-cert FILE] [--cache DIR]
#
# For each image, in this order:
#   1. already in the engine's store: used as it is (a stand-in built earlier says so);
#   2. pulled from its registry (the real image, what users get);
#   3. when no registry answers: a LOCAL STAND-IN is built and tagged with the same name, and a banner says so.
#      The stand-in is a Debian bookworm minbase (debootstrap, from the Debian mirror apt uses on this machine)
#      plus, for Deno, the pinned Deno binary from npm (--deno-bin), laid out like the official image
#      (deno.Dockerfile), and for MLflow a Python venv with requirements-mlflow.txt (mlflow.Dockerfile). Every
#      stand-in carries the label tutoria-mlops.stand-in=<the image it stands in for>.
# The minbase root file system is cached in --cache (default .cache/stand-in) and reused by every engine.
#
# --ca-cert: a PEM bundle the MLflow stand-in's pip must trust (behind a TLS-intercepting proxy).
# Building a stand-in needs root (debootstrap) and the packages debootstrap and the engine (make docker-deps).
# Exit codes: 0 when every image is available, 1 otherwise, 2 for a usage error.
set -euo pipefail

die() {
  echo "error: $*" >&2
  exit 1
}

usage() {
  sed -n '5,6p' "$0" | sed 's/^# *//' >&2
  exit 2
}

here=$(cd "$(dirname "$0")" && pwd)
engine="" deno_image="" deno_bin="" mlflow_image="" requirements="" ca_cert="" cache=".cache/stand-in"
while (($#)); do
  case $1 in
  --engine) engine=${2:-} && shift 2 ;;
  --deno-image) deno_image=${2:-} && shift 2 ;;
  --deno-bin) deno_bin=${2:-} && shift 2 ;;
  --mlflow-image) mlflow_image=${2:-} && shift 2 ;;
  --requirements) requirements=${2:-} && shift 2 ;;
  --ca-cert) ca_cert=${2:-} && shift 2 ;;
  --cache) cache=${2:-} && shift 2 ;;
  *) usage ;;
  esac
done
[[ -n $engine && -n $deno_image && -n $deno_bin ]] || usage
[[ -z $mlflow_image || -n $requirements ]] || usage
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)

# Podman resolves a short name such as denoland/deno only through its registries.conf; the fully qualified
# name is what Docker means by the short one, so the stand-in is tagged with it and every engine finds it.
qualified() {
  local name=$1 first=${1%%/*}
  if [[ $name != */* ]]; then
    echo "docker.io/library/$name"
  elif [[ $first == *.* || $first == *:* || $first == localhost ]]; then
    echo "$name"
  else
    echo "docker.io/$name"
  fi
}

present() {
  "$engine" image inspect "$1" >/dev/null 2>&1
}

stand_in_of() {
  "$engine" image inspect --format '{{ index .Config.Labels "tutoria-mlops.stand-in" }}' "$1" 2>/dev/null || true
}

banner() {
  local line="!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
  printf '%s\n' "$line" "!! $1" "$line" >&2
}

# The Debian mirror apt uses here, as debootstrap wants it (http://host/debian).
debian_mirror() {
  apt-cache policy 2>/dev/null | awk '$3 ~ /^bookworm\/main$/ { print $2; exit }'
}

# Builds (once, then from the cache) the bookworm minbase and imports it as BASE_TAG.
BASE_TAG=localhost/tutoria-mlops-stand-in/debian:bookworm-minbase
minbase() {
  present "$BASE_TAG" && return 0
  local tarball=$cache/bookworm-minbase.tar
  if [[ ! -s $tarball ]]; then
    command -v debootstrap >/dev/null || die "debootstrap is missing; run make docker-deps (as root)"
    [[ $(id -u) == 0 ]] || die "building a stand-in base image needs root (debootstrap); run as root or pull the real images"
    local mirror
    mirror=$(debian_mirror)
    [[ -n $mirror ]] || die "no Debian bookworm mirror in apt's sources (apt-cache policy); cannot debootstrap"
    local root=$cache/rootfs.partial
    rm -rf "$root" "$tarball.partial"
    echo "stand-in: debootstrap --variant=minbase bookworm from $mirror (about a minute)" >&2
    debootstrap --variant=minbase --include=tini bookworm "$root" "$mirror" >"$cache/debootstrap.log" 2>&1 ||
      { tail -n 20 "$cache/debootstrap.log" >&2; die "debootstrap failed; log: $cache/debootstrap.log"; }
    # What an image needs no copy of: package lists and archives (apt-get update fetches them again),
    # documentation, manual pages, translations.
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/usr/share/doc/* "$root"/usr/share/man/* \
      "$root"/usr/share/info/* "$root"/usr/share/locale/* "$root"/var/log/* "$root"/debootstrap
    tar --numeric-owner -C "$root" -cf "$tarball.partial" .
    mv "$tarball.partial" "$tarball"
    rm -rf "$root"
  fi
  "$engine" import --change 'CMD ["bash"]' \
    --change 'LABEL tutoria-mlops.stand-in="debian:bookworm (minbase)"' "$tarball" "$BASE_TAG" >/dev/null
}

build_deno_stand_in() {
  local image=$1 version
  version=$("$deno_bin" --version | awk 'NR == 1 { print $2 }')
  [[ $image == *":debian-$version" ]] ||
    die "$deno_bin is Deno $version but the image is $image; run make setup"
  minbase
  local context=$cache/deno-context
  rm -rf "$context" && mkdir -p "$context"
  cp "$deno_bin" "$context/deno"
  cp "$here/docker-entrypoint.sh" "$context/"
  "$engine" build -q --build-arg "BASE=$BASE_TAG" --build-arg "DENO_VERSION=$version" \
    -f "$here/deno.Dockerfile" -t "$(qualified "$image")" "$context" >/dev/null
  rm -rf "$context"
}

build_mlflow_stand_in() {
  local image=$1 version=${1##*:v}
  minbase
  local context=$cache/mlflow-context
  rm -rf "$context" && mkdir -p "$context"
  cp "$requirements" "$context/requirements-mlflow.txt"
  if [[ -n $ca_cert ]]; then cp "$ca_cert" "$context/extra-ca.pem"; else : >"$context/extra-ca.pem"; fi
  "$engine" build -q --build-arg "BASE=$BASE_TAG" --build-arg "MLFLOW_VERSION=$version" \
    -f "$here/mlflow.Dockerfile" -t "$(qualified "$image")" "$context" >/dev/null
  rm -rf "$context"
}

# Makes IMAGE available: present, pulled, or a stand-in built by BUILD_FUNCTION.
ensure() {
  local image=$1 build=$2 full
  full=$(qualified "$image")
  if present "$full"; then
    local of
    of=$(stand_in_of "$full")
    if [[ -n $of ]]; then
      echo "base image $image: a LOCAL STAND-IN built earlier on this machine (not the upstream image)"
    else
      echo "base image $image: present"
    fi
    return 0
  fi
  if timeout "${PULL_TIMEOUT:-120}" "$engine" pull -q "$full" >/dev/null 2>"$cache/pull.log"; then
    echo "base image $image: pulled"
    return 0
  fi
  banner "No registry answers for $image ($(tail -n 1 "$cache/pull.log" | cut -c1-120)); building a LOCAL STAND-IN under that name. It is NOT the upstream image; users pull the real one."
  local started=$SECONDS
  "$build" "$image"
  banner "Built the LOCAL STAND-IN $full in $((SECONDS - started)) s (label tutoria-mlops.stand-in)."
}

# Concurrent runs (two engines, two checkouts) would debootstrap into the same cache.
exec 9>"$cache/.lock"
flock 9
ensure "$deno_image" build_deno_stand_in
[[ -z $mlflow_image ]] || ensure "$mlflow_image" build_mlflow_stand_in
