# Set-up and entry points. `make demo` and `make test` work on a fresh machine:
# they create .venv if missing, install the CPU build of PyTorch first (so that no
# CUDA wheels are pulled), then the package.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
TORCH  ?= torch==2.13.0

.PHONY: demo test test-fast install install-test bench default-model clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "$(TORCH)"

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PIP) install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(PY)
	$(PIP) install -q -e ".[test]"
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

demo: install
	$(VENV)/bin/aufer demo

test: install-test
	$(PY) -m pytest -q

# the inner loop: everything but the subprocess, kill -9, multi-process and MediaPipe acceptance tests
test-fast: install-test
	$(PY) -m pytest -q -m "not slow"

# retrain and export the shipped default model (aufer/data/models/aufer-lite0-faceapi; pass --cv from benchmarks/real_photos_cv.py for the card) from the bundled data
default-model: install
	$(PY) tools/train_default_model.py

bench: install-test
	$(PY) benchmarks/run_all.py

clean:
	rm -rf runs .pytest_cache
