# UPSS: `make run` starts everything on SQLite + localstripe; `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export FLASK_APP := wsgi

.PHONY: run test install lint translations mutation bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python requirements.txt requirements-dev.txt
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed translations

# Compiled message catalogs (.mo) are built from the committed .po files, never committed.
translations: $(VENV)/.installed
	$(BIN)/pybabel -q compile -d translations

run: install
	$(BIN)/flask db upgrade
	$(BIN)/flask upss seed-demo
	@mkdir -p instance
	@echo "UPSS: open http://127.0.0.1:$${UPSS_PORT:-5000}/ (test payments: localstripe on 127.0.0.1:$${UPSS_LOCALSTRIPE_PORT:-8420})"
	$(BIN)/honcho start -f Procfile

test: install
	scripts/ensure-chromium
	$(BIN)/python -m pytest -n 2 --dist loadfile

lint: install
	$(BIN)/ruff check .

# Mutation testing of the core modules ([tool.mutmut] in pyproject.toml); a whole run takes
# hours on two cores (scripts/mutation_score.py says how to measure a sample instead).
mutation: install
	UPSS_TEST_TEMPLATE_CACHE=$(CURDIR)/instance/template-cache $(BIN)/mutmut run
	$(BIN)/python scripts/mutation_score.py

# The scale benchmark of issue 19 (bench/README.md): needs PostgreSQL on 127.0.0.1:5432 (user
# postgres) and wrk (`apt-get install wrk`); generates upss_bench_1k and upss_bench_100k the
# first time (a few minutes), then reuses them. BENCH_ARGS passes options, e.g. --regenerate.
bench: install
	@command -v wrk >/dev/null || { echo "make bench needs wrk: apt-get install wrk"; exit 1; }
	nice $(BIN)/python -m bench.run $(BENCH_ARGS)
