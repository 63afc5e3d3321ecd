# Two commands set up and run everything on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
# `python3 -m uv` works wherever pip put uv (user site, venv or system), so no PATH juggling.
UV := python3 -m uv
# Two workers (pytest-xdist; the machine has 2 cores): most of the suite waits on servers and
# subprocesses, so two workers overlap the waits. worksteal rebalances the long end-to-end tests.
# `make test PYTEST_ARGS=` runs serially.
PYTEST_ARGS ?= -n 2 --dist worksteal

.PHONY: setup test test-fast lint demo bench serve serve-pg serve-local browser postgresql report-screenshot

# --compile-bytecode and compileall: bytecode for every module, once. Where PYTHONDONTWRITEBYTECODE
# is set (it is in these machines' environment), Python caches none, so each of the ~300 Python
# processes of `make test` (CLI runs, Prefect servers, workers, flow runs) compiled Prefect and its
# dependencies from source: ~2.7 s of CPU each for a flow run's imports, 2.3 s for the `prefect`
# CLI. Measured on test_ledger_cli.py and one test_serve.py test (-n 0): 206 s CPU and 257 s
# before, 121 s and 184 s after. The first sync compiles for ~15 s; later ones skip what is done.
setup:
	@python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	$(UV) sync --locked --compile-bytecode
	$(UV) run --locked python -m compileall -q -j 0 voxlake flows tests

lint: setup
	$(UV) run --locked ruff check .
	$(UV) run --locked ruff format --check .
	$(UV) run --locked mypy

test: lint browser postgresql
	$(UV) run --locked pytest $(PYTEST_ARGS)

# The fast tier (tests/README.md): tests/unit and the integration tests that are neither slow nor
# real speech recognition. No CLI process, no Prefect server of its own, no lint: for the edit-run
# loop; `make test` runs everything.
test-fast: setup
	$(UV) run --locked pytest $(PYTEST_ARGS) tests/unit tests/integration -m "not slow and not sphinx"

# Debian's chromium, for the report's headless-browser test (tests/integration/test_report_browser.py).
# Installed only where we are root with apt-get; elsewhere that test skips and says why.
browser:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y --no-install-recommends chromium >/dev/null 2>&1 \
	  || { apt-get update -qq && apt-get install -y --no-install-recommends chromium >/dev/null; } \
	  || echo "could not install chromium: the browser test will skip"; \
	else echo "no chromium, and not root with apt-get: the browser test will skip"; fi

# Debian's PostgreSQL, for `voxlake serve --database postgresql` and the failure drills that run
# on it (tests/e2e/test_postgres_drills.py). Installed only where we are root with apt-get; elsewhere
# those tests skip and say why. Debian keeps initdb and postgres in /usr/lib/postgresql/*/bin.
postgresql:
	@if ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y --no-install-recommends postgresql >/dev/null 2>&1 \
	  || { apt-get update -qq && apt-get install -y --no-install-recommends postgresql >/dev/null; } \
	  || echo "could not install postgresql: the PostgreSQL tests will skip"; \
	else echo "no PostgreSQL, and not root with apt-get: the PostgreSQL tests will skip"; fi

# docs/report.png: the browser test's screenshot of the report over the demo's ./output.
report-screenshot: setup browser
	test -d output || $(MAKE) demo
	VOXLAKE_REPORT_FROM=output VOXLAKE_REPORT_REFERENCES=data/manifest.csv \
	  VOXLAKE_REPORT_SCREENSHOT=docs/report.png \
	  $(UV) run --locked pytest -p no:cacheprovider tests/integration/test_report_browser.py

# The main job on the embedded local server (no API key needed): data/ -> ./output. The
# embedded server recognises the speech with its sphinx engine; the WER report compares the
# transcripts with the reference texts beside the clips; last, the HTML report (its path).
demo: setup
	rm -rf output
	$(UV) run --locked voxlake run data/manifest.csv --output output
	$(UV) run --locked python data/demo_query.py output
	$(UV) run --locked python data/wer_report.py output data/manifest.csv
	@echo "HTML report (charts inline, no network needed):"
	@$(UV) run --locked voxlake report output --references data/manifest.csv

# The benchmark suite (B1-B5, benchmarks/README.md) against the local server; ~25 min on 2 cores.
# Not part of `make test`. The `bench` group holds the peers' dependencies (the AssemblyAI SDK).
# --compile-bytecode (as in setup): for the bench group's packages too.
bench: setup
	$(UV) sync --locked --group bench --compile-bytecode
	$(UV) run --locked --group bench python benchmarks/bench.py all

# Prefect server, work pool, blocks, deployments/prefect.yaml and a worker (docs/operations.md).
# SERVE_ARGS='--host 0.0.0.0' needs PREFECT_SERVER_API_AUTH_STRING.
serve: setup
	$(UV) run --locked voxlake serve $(SERVE_ARGS)

# The same on PostgreSQL (data in .voxlake/postgres): for concurrent runs and many workers.
serve-pg: setup postgresql
	$(UV) run --locked voxlake serve --database postgresql $(SERVE_ARGS)

# The AssemblyAI-compatible local server (docs/local-server.md).
serve-local: setup
	$(UV) run --locked voxlake serve-local --port 8765
