# The two commands: `make run` (the product on embedded defaults) and `make test` (the whole suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test install install-dev browser lint bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

browser:
	@command -v chromium >/dev/null 2>&1 || bash scripts/install-chromium.sh

run: install
	DRIFTBOARD_EMBEDDED=1 $(BIN)/python manage.py migrate --noinput
	DRIFTBOARD_EMBEDDED=1 $(BIN)/python manage.py serve --demo

test: install-dev browser
	DRIFTBOARD_VAR_DIR=$${DRIFTBOARD_VAR_DIR:-$(CURDIR)/var/test} $(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install-dev
	$(BIN)/ruff format --check . && $(BIN)/ruff check .

bench: install-dev
	$(BIN)/python bench/scoring.py && $(BIN)/python bench/calibration.py && $(BIN)/python bench/sampling.py
