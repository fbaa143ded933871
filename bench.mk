# Benchmark targets, included by the Makefile (`-include bench.mk`). Not part of `make test`.

# apt-get needs root: sudo when not root.
BENCH_SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: bench bench-api bench-deps

##@ Benchmarks
bench: setup ## Benchmark every stage and the peers at 10k/100k/1M reviews (~8 min); updates docs/benchmarks.md (ARGS="--full", "--sizes 2000,10000 --no-docs")
	$(TASK) bench $(ARGS)

bench-api: setup ## Benchmark the inference API beside a bare Deno.serve with wrk (~2 min); updates docs/benchmarks.md (ARGS="--rounds 3 --profile")
	$(TASK) bench --api $(ARGS)

bench-deps: ## Install the benchmark's peers and tools from Debian: python3-sklearn, fasttext, time, wrk (apt-get)
	@if /usr/bin/python3 -c 'import sklearn' 2>/dev/null && [ -x /usr/bin/fasttext ] && [ -x /usr/bin/time ] && [ -x /usr/bin/wrk ]; then \
		echo "bench-deps: python3-sklearn, fasttext, time and wrk are installed"; \
	else \
		command -v apt-get >/dev/null || { echo "error: bench-deps needs apt-get (Debian/Ubuntu); install scikit-learn for /usr/bin/python3, the fastText CLI at /usr/bin/fasttext, GNU time and wrk yourself" >&2; exit 1; }; \
		$(BENCH_SUDO) apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $(BENCH_SUDO) apt-get install -y -q --no-install-recommends python3-sklearn fasttext time wrk; \
	fi
