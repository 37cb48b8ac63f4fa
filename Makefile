# jobstream: `make demo` and `make test` set everything up themselves (virtualenv, Kafka jars,
# the local broker) and stop only a broker they started.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export JOBSTREAM := $(BIN)/jobstream

.PHONY: venv lint docs test test-unit demo chaos bench bench-compare broker-start broker-stop clean

venv: $(STAMP)

$(STAMP): pyproject.toml requirements.lock requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.lock -r requirements-dev.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

lint: venv
	$(BIN)/ruff check jobstream config schemas producers consumers examples tests benchmarks scripts
	scripts/typecheck-tree.sh
	$(BIN)/mypy
	JOBSTREAM_SCHEMA_DIRS='["examples/schemas"]' $(BIN)/jobstream schemas check

# The documentation site, strict: a broken link or anchor, or a page out of the nav, fails.
docs: venv
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# A broker started for the run gets a fresh temporary data dir, removed at the end
# (scripts/with-broker.sh).
# scripts/run-suite.sh: unit, integration and deploy tests on pytest-xdist workers, then the
# console and fault suites in one process.
# tests/console drives a real Chromium: scripts/ensure-browser.sh installs it or fails.
test: lint docs
	scripts/ensure-browser.sh
	JOBSTREAM_FRESH_BROKER=1 BIN=$(BIN) scripts/with-broker.sh scripts/run-suite.sh

test-unit: venv
	$(BIN)/python -m pytest tests/unit -q -p no:cacheprovider

demo: venv
	scripts/with-broker.sh $(BIN)/python -m examples.demo

# Fault suite (tests/chaos) at full size, under ~40 min: real workers, a real broker, injected
# faults, then the books. One line per scenario goes to tests/chaos/results/latest.json and is
# printed at the end. JOBSTREAM_CHAOS_SCALE=short|medium runs smaller sizes (short is what
# `make test` runs).
chaos: venv
	JOBSTREAM_CHAOS_SCALE=$${JOBSTREAM_CHAOS_SCALE:-full} scripts/with-broker.sh $(BIN)/python \
	  -m pytest tests/chaos -q -rfE -p no:cacheprovider --basetemp=$${TMPDIR:-/tmp}/jobstream-chaos

# Benchmarks side by side with the raw confluent-kafka client (benchmarks/run.py), about 8 min:
# prints a table and writes benchmarks/results/latest.json. `make bench ARGS=--quick` is a smoke
# run (~3 min); ARGS="--only overhead" runs one. Honors JOBSTREAM_BROKER__PORT like `make test`.
bench: venv
	scripts/with-broker.sh $(BIN)/python -m benchmarks.run $(ARGS)

# An older commit (BASE, any git revision) and this tree side by side in one run, alternating
# rounds on one broker (benchmarks/compare.py): `make bench-compare BASE=main~5 ARGS="--only io"`.
bench-compare: venv
	scripts/with-broker.sh $(BIN)/python -m benchmarks.compare --base "$(BASE)" $(ARGS)

broker-start: venv
	$(BIN)/jobstream broker start

broker-stop: venv
	$(BIN)/jobstream broker stop

clean:
	rm -rf $(VENV) *.egg-info .mypy_cache .ruff_cache .typecheck .site
