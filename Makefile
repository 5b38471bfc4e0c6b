# One entry point for people and CI: `make run` and `make test` set up everything they need.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY_STAMP := $(VENV)/.installed
JS_STAMP := web/node_modules/.installed

.PHONY: setup run test test-fast lint bench-smoke

# Sources compiled with mypyc at install (segmenter/native.py): an edit rebuilds them.
NATIVE_SRC := $(shell $(PY) -c "import runpy; print(' '.join(m.replace('.', '/') + '.py' for m in runpy.run_path('segmenter/native.py')['COMPILED']))")

$(PY_STAMP): pyproject.toml requirements.lock setup.py segmenter/native.py $(NATIVE_SRC)
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c requirements.lock -e '.[dev]'
	touch $@

$(JS_STAMP): web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund --loglevel=error
	touch $@

setup: $(PY_STAMP) $(JS_STAMP)

run: setup
	$(BIN)/gateway run $(ARGS)

lint: $(PY_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: setup
	bash deploy/system-packages.sh
	$(MAKE) lint
	$(BIN)/pytest
	# The protocol and segmenter tests once more on the sources of the compiled modules (~40 s).
	RTMP_HLS_PURE_PYTHON=1 $(BIN)/pytest -q tests/rtmp tests/segmenter

# Everything but the end-to-end tests (real clients over loopback, Chromium, the wheel build),
# and lint: the quick check while working. `make test` is what CI runs.
test-fast: setup
	bash deploy/system-packages.sh
	$(MAKE) lint
	$(BIN)/pytest -q -m "not e2e"

bench-smoke: setup
	$(BIN)/pytest tests/bench -q
