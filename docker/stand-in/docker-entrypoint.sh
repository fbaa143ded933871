#!/bin/sh
# Entry point of the LOCAL STAND-IN for denoland/deno (see base_images.sh): like the official image's, a first
# argument that is a Deno subcommand or a flag runs `deno ...`; anything else runs as a command.
set -e
case ${1:-} in
-*) exec deno "$@" ;;
bench | bundle | cache | check | compile | completions | coverage | doc | eval | fmt | help | info | init | \
  install | jupyter | lint | lsp | publish | repl | run | serve | task | test | types | uninstall | upgrade | \
  vendor | add | remove | outdated | clean | ci)
  exec deno "$@"
  ;;
esac
exec "$@"
