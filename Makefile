# gru-bench: `make run` (the quick suite + HTML report), `make test` (the test suite).
# Each target creates .venv and installs what it needs; running it twice is safe.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
EXTRAS  ?= torch,tensorflow-cpu,ray,dev
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: run test install browser bench clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints-cpu.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints-cpu.txt -e '.[$(EXTRAS)]'
	touch $@

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

test: $(STAMP) browser
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python bench/perf/train_step.py

clean:
	rm -rf $(VENV) build dist *.egg-info bench/*.egg-info .pytest_cache
