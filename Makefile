# gru-bench: `make run` (the answer suite + HTML report), `make test` (ruff, then the test suite).
# Each target creates .venv and installs what it needs; running it twice is safe.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
# The exact, hashed versions that were tested (one lock per install flavour; `make lock` refreshes them from
# pyproject.toml's ranges). LOCK=locks/gpu.txt on a CUDA machine (generated, not used by CI).
LOCK    ?= locks/cpu.txt
# Where pip finds torch's CPU build (2.13.0+cpu is not on PyPI) when its own configuration (an index, find-links,
# a cache) does not have it: tried only if the install without it fails, since an unreachable index costs ~8 s a package.
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
LOCKENV := .lockenv
LOCK_FLAGS ?=
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: run test install lock lint browser bench clean

install: $(STAMP)

$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --require-hashes -r $(LOCK) || { \
	  echo "retrying with torch's index $(TORCH_INDEX)"; \
	  $(BIN)/python -m pip install -q --require-hashes --extra-index-url $(TORCH_INDEX) -r $(LOCK); }
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e . 2>/dev/null || $(BIN)/python -m pip install -q --no-deps -e .
	touch $@

# Refresh the locks from pyproject.toml's ranges with uv (in its own venv, never in .venv); the pins already in a
# lock are kept unless `LOCK_FLAGS=--upgrade`. Commit the result. Where torch's index cannot be reached, point uv at a
# folder holding the CPU wheel: `make lock TORCH_INDEX= LOCK_FLAGS="--find-links DIR"`.
UV_COMPILE = $(LOCKENV)/bin/uv pip compile pyproject.toml --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
	--generate-hashes --index-strategy unsafe-best-match --no-emit-index-url --no-emit-find-links \
	--custom-compile-command "make lock" $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) $(LOCK_FLAGS)
lock:
	test -x $(LOCKENV)/bin/uv || { $(PY) -m venv $(LOCKENV) && $(LOCKENV)/bin/python -m pip install -q uv; }
	$(UV_COMPILE) --extra torch --extra tensorflow-cpu --extra ray --extra dev -c locks/cpu.in -o locks/cpu.txt
	$(UV_COMPILE) --extra torch --extra tensorflow --extra ray --extra dev -o locks/gpu.txt

# Debian's Chromium for the report's browser test (a test tool's own browser download does not work offline).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
	      || echo "warning: could not install chromium; the browser test will skip"; \
	  else echo "warning: chromium missing and apt-get unavailable; the browser test will skip"; fi; }

# The report is written even when some cases failed; the run's exit code is kept.
run: $(STAMP)
	$(BIN)/gru-bench run answer --out results; rc=$$?; \
	  rec=$$(ls -t results/*/*_answer.json | head -1); \
	  $(BIN)/gru-bench report "$$rec" -o reports && exit $$rc

# One linter config for the whole tree (pyproject [tool.ruff]); `make test` runs it first.
lint: $(STAMP)
	$(BIN)/ruff check bench tests

test: $(STAMP) browser lint
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python bench/perf/train_step.py

clean:
	rm -rf $(VENV) $(LOCKENV) build dist *.egg-info bench/*.egg-info .pytest_cache
