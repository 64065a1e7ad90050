# Two commands for a fresh machine: `make run` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
DB ?= $(or $(RUNLEDGER_DB),data/workspace.duckdb)
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1

.PHONY: run test lint install browser postgres

install: $(VENV)/.installed

browser:
	bash scripts/install-browser.sh

postgres:
	bash scripts/install-postgres.sh

$(VENV)/.installed: requirements.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

run: install browser
	$(PY) -m engine --db "$(DB)" demo --if-empty
	bash scripts/run-app.sh "$(PY)" "$(DB)"

test: install browser postgres
	$(PY) -m pytest -n 2 --dist loadfile

# ruff (lint and import order) and mypy (types), both configured in pyproject.toml; main is clean under both.
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
