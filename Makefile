# Two commands for a fresh machine: `make run` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
DB ?= $(or $(RUNLEDGER_DB),data/workspace.duckdb)
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1

.PHONY: run test install

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

run: install
	$(PY) -m engine --db "$(DB)" demo --if-empty
	RUNLEDGER_DB="$(DB)" $(VENV)/bin/streamlit run app.py

test: install
	$(PY) -m pytest
