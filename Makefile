# Two commands on a fresh machine: `make run` and `make test`. Each sets up the venv itself from
# the hash-pinned requirements; nothing is installed by hand.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
WEB_STAMP := web/vendor/.installed
SPAWN  := $(BIN)/vodforge-pdeathsig
DATA   ?= var
BENCH_ARGS ?=
RUNTIME_BENCH_ARGS ?=

.PHONY: venv web sysdeps run demo test lint typecheck unit bench bench-ladder bench-runtime bench-api clean

# System packages the tests need and nothing else provides: Debian's ffmpeg (the second,
# unpinned toolchain that certification and canary tests compare against) and Debian's Chromium
# + ChromeDriver for the browser test. Installed only when missing; vodforge itself never uses
# them (its ffmpeg is the pinned wheel's, never PATH's).
SYSDEPS := ffmpeg chromium chromium-driver
sysdeps:
	@missing=""; for p in $(SYSDEPS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

venv: $(STAMP) $(WEB_STAMP) $(SPAWN)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps \
		-r requirements.txt -r requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(BIN)/vodforge toolchain check
	touch $@

# The launcher that makes ffmpeg die with its worker (see tools/pdeathsig.c), static when the C
# library allows. Without a C compiler it is skipped and the runner uses util-linux's setpriv.
$(SPAWN): tools/pdeathsig.c $(STAMP)
	@$(CC) -O2 -static -o $@ $< 2>/dev/null || $(CC) -O2 -o $@ $< \
		|| echo "note: no C compiler; ffmpeg calls will go through setpriv (slower to spawn)"

# The dashboard's front-end libraries: exact versions from web/package-lock.json (npm ci), their
# ES module builds copied into web/vendor/ (git-ignored), which the API serves with the page at
# `/`. No CDN: the dashboard works offline. Reruns only when the lock changes.
web: $(WEB_STAMP)

$(WEB_STAMP): web/package-lock.json web/package.json
	npm ci --prefix web --ignore-scripts --no-audit --no-fund --loglevel=error
	rm -rf web/vendor && mkdir -p web/vendor
	cp web/node_modules/hls.js/dist/hls.mjs web/vendor/hls.mjs
	cp web/node_modules/uplot/dist/uPlot.esm.js web/vendor/uPlot.esm.js
	cp web/node_modules/uplot/dist/uPlot.min.css web/vendor/uPlot.min.css
	cp web/node_modules/eventsource-parser/dist/index.js web/vendor/eventsource-parser.js
	touch $@

# `make run`: the whole embedded system (broker, workers, watch folder, HTTP on :8080) with its
# data under $(DATA). Drop a video into $(DATA)/uploads/incoming/ and watch `vodforge jobs list`.
run: $(STAMP) $(WEB_STAMP) $(SPAWN)
	VODFORGE_DATA_DIR=$(DATA) $(BIN)/vodforge serve

# A one-off local transcode without the runtime: a generated 12 s clip into $(DATA)/demo/out.
demo: $(STAMP)
	$(BIN)/vodforge sample $(DATA)/demo/input.mp4 --seconds 12 --size 1280x720
	$(BIN)/vodforge transcode $(DATA)/demo/input.mp4 -o $(DATA)/demo/out

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

test: sysdeps web lint typecheck $(SPAWN)
	$(BIN)/pytest

unit: $(STAMP)
	$(BIN)/pytest tests/unit

# Benchmarks report, they assert nothing: the ladder against plain ffmpeg (issue 2) and the
# runtime's dispatch latency and burst throughput against a plain process pool (issue 3).
bench: bench-ladder bench-runtime bench-api

bench-ladder: $(STAMP) $(SPAWN)
	$(PY) bench/ladder.py $(BENCH_ARGS)

bench-runtime: $(STAMP) $(SPAWN)
	$(PY) bench/runtime.py $(RUNTIME_BENCH_ARGS)

# The HTTP API's synchronous upload (issue 4): 10 s 720p clip → poster/thumbnails/GIF URLs.
bench-api: $(STAMP)
	$(PY) bench/api_sync.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
