# paperbook: `make book` builds the website, `make test` runs every test. Both set up .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
NB     ?=

.PHONY: venv book catalog test execute clean

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

venv: $(VENV)/.installed

catalog: venv
	$(BIN)/python tools/catalog_page.py

book: venv catalog
	$(BIN)/jupyter-book build -W --keep-going .

# The browser check (tests/test_browser.py) reads the built site, so the book is built first. One pytest run
# covers the unit, catalog and contract tests (tests/) and every chapter at smoke scale under nbval (chapters/);
# tests/conftest.py seeds PAPERBOOK_DATA from ../shared/data when present and times each notebook.
test: book
	$(BIN)/python -m pytest -p no:cacheprovider --nbval-lax --nbval-current-env --nbval-cell-timeout=120 \
		--durations=15 tests/ chapters/

execute: venv
	@test -n "$(NB)" || { echo "usage: make execute NB=chapters/NN-part/slug.ipynb [SCALE=cpu]"; exit 2; }
	$(BIN)/python tools/execute.py $(NB) --scale $(or $(SCALE),cpu)

clean:
	rm -rf _build
