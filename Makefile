# Two entry points that each do all set-up on a fresh machine (Python 3.11+ and make are all they need):
#   make demo   creates .venv, installs rrg-local, runs the demo (generate + index a demo library)
#   make test   creates .venv, installs rrg-local with its dev tools, runs lint and the whole test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
EXTRAS ?= dev

.PHONY: demo test lint bench clean

$(VENV)/.installed-$(EXTRAS): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $@

demo: $(VENV)/.installed-$(EXTRAS)
	$(VENV)/bin/rrg demo

test: $(VENV)/.installed-$(EXTRAS)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

bench: $(VENV)/.installed-$(EXTRAS)
	$(PY) bench/index.py

clean:
	rm -rf $(VENV)
