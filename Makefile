# durable-mcp: `make run` starts the server, `make test` runs every check.
# Every uv command goes through scripts/run_uv.py, which installs uv (into .tools/)
# when it is not installed, and finds a Python >= 3.12 on this machine (pyenv's
# too) before uv may download one; uv then makes the environment (.venv/) from
# uv.lock. Nothing else needs installing first.

SHELL := /bin/bash
UV := python3 scripts/run_uv.py
ARGS ?=

.PHONY: run proxy claude-config jobs tasks-client test lint format bench pg-schema sync wheel

# In a process group of its own that holds the terminal: Ctrl-C stops the server
# (cleanly, exit 0) and make with it, instead of killing make (scripts/foreground.py).
run: sync
	@python3 scripts/foreground.py $(UV) run --locked durable-mcp serve $(ARGS)

proxy: sync
	@$(UV) run --locked --quiet python proxy.py

# Prints the Claude Desktop entry for this checkout (absolute paths): JSON only on stdout.
claude-config: sync
	@$(UV) run --locked --quiet durable-mcp claude-config $(ARGS)

jobs: sync
	@$(UV) run --locked --quiet durable-mcp jobs $(ARGS)

# The README's MCP tasks example: a PEP 723 script with its own environment.
tasks-client:
	@$(UV) run --quiet --script examples/tasks_client.py $(ARGS)

test: lint
	$(UV) run --locked pytest $(ARGS)

bench: sync
	$(UV) run --locked python bench/run.py $(ARGS)
	$(UV) run --locked python bench/store.py $(ARGS)
	$(UV) run --locked python bench/scale.py $(ARGS)
	$(UV) run --locked python bench/window.py $(ARGS)
	$(UV) run --locked python bench/retained.py $(ARGS)
	$(UV) run --locked python bench/load.py --output bench/results-load.json $(ARGS)
	$(UV) run --locked python bench/load.py --kills 10 --disk-full --output bench/results-chaos.json $(ARGS)
	$(UV) run --locked python bench/pg_takeover.py $(ARGS)
	$(UV) run --locked python bench/pg_outage.py $(ARGS)

lint: sync
	$(UV) run --locked ruff check .
	$(UV) run --locked ruff format --check .
	$(UV) run --locked mypy

format: sync
	$(UV) run --locked ruff check --fix .
	$(UV) run --locked ruff format .

# resonate-pg's schema, for RESONATE_PG_DSN: downloaded at a pinned commit and
# checked (scripts/pg_schema.py), never committed. Apply it once to the database.
pg-schema: resonate.sql

resonate.sql:
	python3 scripts/pg_schema.py

# The package as a wheel, in dist/ (for `pip install` into another project).
wheel:
	$(UV) build --wheel --quiet

sync:
	@$(UV) sync --locked --quiet
	@# A .venv made before the package was renamed (durable-mcp -> mcp-durable-jobs)
	@# lost the durable-mcp command when the old name was uninstalled: put it back.
	@test -x .venv/bin/durable-mcp || $(UV) sync --locked --quiet --reinstall-package mcp-durable-jobs
