# Two commands do all the set-up on a fresh machine: `make sandbox` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Parallel test workers (pytest-xdist); the e2e tests share one stack per run.
WORKERS ?= 2

.PHONY: install sandbox images conformance test test-under-load unit e2e lint down clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## sandbox: install, start the stack, run the quickstart scenario, print where everything is
sandbox: install
	$(BIN)/mcp-sandbox up $(if $(RUNTIME),--runtime $(RUNTIME)) > /dev/null
	mkdir -p reports
	$(BIN)/mcp-sandbox run scenarios/00-quickstart.yaml --report reports/quickstart.html
	$(BIN)/mcp-sandbox info
	@echo "Quickstart report: reports/quickstart.html"

## images: a Docker engine (started if none answers) and the docker runtime's images built here, cached by input
images: install
	$(BIN)/python -m sandbox.stack.images

## conformance: the official MCP conformance suite at its pinned version (npm; Node 22 from npm when the
## machine's is older), cached; its tests run it on loopback only
conformance: install
	$(BIN)/python -m sandbox.conformance.suite

## test: install, check the layering, then run the unit and end-to-end suites (the e2e suite starts and stops
## its own stack); the README's reliability table is rendered from this run
test: install images conformance
	$(BIN)/lint-imports
	$(BIN)/pytest -n $(WORKERS) --dist loadgroup --reliability-table README.md --capability-table README.md tests scenarios

## test-under-load: `make test` while four CPU burners (each bounded to three hours) load the machine for the whole run
test-under-load: install images conformance
	$(BIN)/python -m sandbox.harness.burners --processes 4 --seconds 10800 -- $(MAKE) test

unit: install
	$(BIN)/pytest -n $(WORKERS) tests/unit

e2e: install images conformance
	$(BIN)/pytest -n $(WORKERS) --dist loadgroup tests/e2e

lint: install
	$(BIN)/ruff check sandbox tests
	$(BIN)/ruff format --check sandbox tests
	$(BIN)/lint-imports

down: install
	$(BIN)/mcp-sandbox down

clean:
	-$(BIN)/mcp-sandbox down
	rm -rf $(VENV) .pytest_cache build dist *.egg-info
