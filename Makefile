# Two commands on a fresh machine: `make run` and `make test`. Each sets up the venv itself from
# the hash-pinned requirements; nothing is installed by hand.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DATA   ?= var
BENCH_ARGS ?=

.PHONY: venv run demo test lint typecheck unit bench clean

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps \
		-r requirements.txt -r requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(BIN)/vodforge toolchain check
	touch $@

# Until the runtime lands (`vodforge serve`), `make run` runs the demo: generate a 12 s clip with
# the pinned ffmpeg and transcode it into the default ladder under $(DATA)/demo/out.
run: demo

demo: $(STAMP)
	$(BIN)/vodforge sample $(DATA)/demo/input.mp4 --seconds 12 --size 1280x720
	$(BIN)/vodforge transcode $(DATA)/demo/input.mp4 -o $(DATA)/demo/out

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/pytest

unit: $(STAMP)
	$(BIN)/pytest tests/unit

bench: $(STAMP)
	$(PY) bench/ladder.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
