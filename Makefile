# Two commands set up and run everything on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
# `python3 -m uv` works wherever pip put uv (user site, venv or system), so no PATH juggling.
UV := python3 -m uv
PYTEST_ARGS ?=

.PHONY: setup test lint demo bench serve serve-local

setup:
	@python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	$(UV) sync --locked

lint: setup
	$(UV) run --locked ruff check .
	$(UV) run --locked ruff format --check .

test: lint
	$(UV) run --locked pytest $(PYTEST_ARGS)

# The main job on the embedded local server (no API key needed): data/ -> ./output. The
# embedded server recognises the speech with its sphinx engine; the WER report compares the
# transcripts with the reference texts beside the clips.
demo: setup
	rm -rf output
	$(UV) run --locked voxlake run data/manifest.csv --output output
	$(UV) run --locked python data/demo_query.py output
	$(UV) run --locked python data/wer_report.py output data/manifest.csv

# The benchmark suite (B1-B5, benchmarks/README.md) against the local server; ~25 min on 2 cores.
# Not part of `make test`. The `bench` group holds the peers' dependencies (the AssemblyAI SDK).
bench: setup
	$(UV) sync --locked --group bench
	$(UV) run --locked --group bench python benchmarks/bench.py all

# Prefect server, work pool, blocks, deployments/prefect.yaml and a worker (docs/operations.md).
# SERVE_ARGS='--host 0.0.0.0' needs PREFECT_SERVER_API_AUTH_STRING.
serve: setup
	$(UV) run --locked voxlake serve $(SERVE_ARGS)

# The AssemblyAI-compatible local server (docs/local-server.md).
serve-local: setup
	$(UV) run --locked voxlake serve-local --port 8765
