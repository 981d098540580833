# The two commands of the README: `make run` starts the studio, `make test` runs every test.
# Both create .venv and install what is missing, so a fresh clone needs nothing by hand.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
CHROMIUM := /usr/bin/chromium

.PHONY: run test test-fast browser data train clean-venv

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

run: $(STAMP)
	$(PY) app.py $(ARGS)

test: $(DEV_STAMP) browser
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-fast: $(DEV_STAMP)
	$(PY) -m pytest -q -m "not slow and not browser" $(PYTEST_ARGS)

data: $(STAMP)
	$(PY) scripts/build_drum_dataset.py --out data/drums

train: $(STAMP)
	$(PY) -m engine train wave --data data/drums --run-dir runs/drums --init checkpoints/drums $(ARGS)
