# The two commands of the README: `make run` starts the studio, `make test` runs every test.
# Both create .venv and install what is missing, so a fresh clone needs nothing by hand.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
CHROMIUM := /usr/bin/chromium
KITS := /usr/share/hydrogen/data/drumkits
# Test workers: each test uses one torch thread (tests/conftest.py), so two workers fill two cores.
# A test file stays on one worker (--dist loadfile): the browser tests share one server per file.
TEST_JOBS ?= 2
XDIST := -n $(TEST_JOBS) --dist loadfile

.PHONY: run test test-fast test-kernels browser kits data train clean-venv

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip >/dev/null

$(STAMP): requirements.txt | $(PY)
	$(PY) -m pip install -r requirements.txt
	touch $@

$(DEV_STAMP): requirements-dev.txt $(STAMP)
	$(PY) -m pip install -r requirements-dev.txt
	touch $@

# Debian's Chromium for the browser tests (Playwright drives it; it never downloads a browser).
browser:
	@test -x $(CHROMIUM) || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else echo "browser tests need Debian's chromium: sudo apt-get install -y chromium"; fi; }

# Debian's Hydrogen kits: the training data, and what the real-kit labelling test reads.
kits:
	@test -d $(KITS) || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq hydrogen-drumkits hydrogen-data >/dev/null; \
	  else echo "the real-kit test needs Debian's kits: sudo apt-get install -y hydrogen-drumkits hydrogen-data"; fi; }

run: $(STAMP)
	$(PY) app.py $(ARGS)

# The whole suite, then the tests whose verdict compares figures once more on torch's plain
# (non-vectorised) kernels: another CPU (AVX-512, Arm) rounds differently, and a margin that
# only this machine's rounding clears must fail here, not on a user's machine.
test: $(DEV_STAMP) browser kits
	$(PY) -m pytest -q $(XDIST) $(PYTEST_ARGS)
	$(MAKE) --no-print-directory test-kernels

test-kernels: $(DEV_STAMP)
	ATEN_CPU_CAPABILITY=default $(PY) -m pytest -q -m numeric $(XDIST) $(PYTEST_ARGS)

test-fast: $(DEV_STAMP)
	$(PY) -m pytest -q -m "not slow and not browser" $(XDIST) $(PYTEST_ARGS)

data: $(STAMP)
	$(PY) scripts/build_drum_dataset.py --out data/drums

train: $(STAMP)
	$(PY) -m engine train wave --data data/drums --run-dir runs/drums --init checkpoints/drums $(ARGS)
