# Two entry points that each do all set-up on a fresh machine (Python 3.11+ and make are all they need):
#   make demo   creates .venv, installs rrg-local with its runtimes (llama.cpp, onnxruntime) and terminal UI, runs the demo:
#               a generated photo library, indexed, taught, auto-tagged and queried with the shipped demo model
#   make test   creates .venv, installs rrg-local with the runtime, the model tools and the dev tools,
#               runs lint and the whole test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet
# Never -march=native: the binary died with SIGILL on these VMs.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF

.PHONY: demo test bench clean

$(VENV)/.base: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) -e '.[vlm,tui,embed]'
	touch $@

# torch first, pinned: a bare `torch` requirement would pull a multi-GB CUDA build.
$(VENV)/.test: $(VENV)/.base
	$(PIP) torch==2.13.0
	$(PIP) -e '.[dev,vlm,embed,train,tui]'
	# The terminal test drives `rrg tui` in a real tmux; without tmux (and no root for apt) it skips.
	command -v tmux >/dev/null || (apt-get update -qq && apt-get install -y -qq tmux) || echo 'tmux unavailable'
	$(VENV)/bin/rrg-train fetch-converter
	touch $@

demo: $(VENV)/.base
	$(VENV)/bin/rrg demo

test: $(VENV)/.test
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

bench: $(VENV)/.test
	$(PY) bench/index.py
	$(PY) bench/runtime.py

clean:
	rm -rf $(VENV)
