# gclab — every target creates the venv it needs.
PY_SYS ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
GCLAB  := $(VENV)/bin/gclab
TORCH  ?= torch==2.13.0
DATA   ?= data
OUT    ?= reports
SWEEP  ?= demo
BACKEND ?= local
SET    ?=
WORKERS ?=
STAMP  := $(VENV)/.gclab-installed
BENCH_STAMP := $(VENV)/.gclab-bench-installed

# User-supplied values reach the recipes raw, through the environment, always quoted:
# a path with spaces or a query with `$` or quotes arrives exactly as typed.
override DATA := $(value DATA)
override OUT := $(value OUT)
override SWEEP := $(value SWEEP)
override Q := $(value Q)
export DATA OUT SWEEP Q SET WORKERS BACKEND TIMEOUT MEMORY ROWS REPAIR HUGE SIZES

.PHONY: setup demo collect paper report sql claims check calibrate test test-s3-demo bench bench-store clean clean-data

# Stamp depends on pyproject so a dependency change reinstalls; a second call is instant. The pinned
# torch is named beside the extras (dev has lightning) so pip never swaps it for another build.
$(STAMP): pyproject.toml
	@test -x "$(PY)" || $(PY_SYS) -m venv "$(VENV)"
	"$(PY)" -m pip install -q --disable-pip-version-check $(TORCH)
	"$(PY)" -m pip install -q --disable-pip-version-check $(TORCH) -e ".[dev,ray]"
	@touch "$(STAMP)"

setup: $(STAMP)

# The demo's sweeps (gclab/collect/sweep.py DEMO_SWEEPS) at their [demo] scale, then the report and its claims summary.
demo: setup
	"$(GCLAB)" collect --sweep demo --data "$$DATA" --backend "$$BACKEND"
	"$(GCLAB)" report --data "$$DATA" --out "$$OUT"

# SET is a space-separated list of key=value, split on purpose; HUGE=1 lifts the size bounds.
collect: setup
	"$(GCLAB)" collect --sweep "$$SWEEP" --data "$$DATA" --backend "$$BACKEND" $${SET:+--set $$SET} \
		$${WORKERS:+--workers "$$WORKERS"} $${HUGE:+--allow-huge}

paper: setup
	"$(GCLAB)" collect --paper --data "$$DATA" --backend "$$BACKEND"

report: setup
	"$(GCLAB)" report --data "$$DATA" --out "$$OUT"

# TIMEOUT (seconds), MEMORY (e.g. 8GB) and ROWS override the query's bounds.
sql: setup
	"$(GCLAB)" sql --data "$$DATA" $${Q:+-q "$$Q"} $${TIMEOUT:+--timeout "$$TIMEOUT"} \
		$${MEMORY:+--memory-limit "$$MEMORY"} $${ROWS:+--max-rows "$$ROWS"}

claims: setup
	"$(GCLAB)" claims --data "$$DATA"

# Verify every run folder; REPAIR=1 moves bad runs to $(DATA)/quarantine/ (never deletes).
check: setup
	"$(GCLAB)" check --data "$$DATA" $${REPAIR:+--repair}

# Each claim test on 200 null and 100 planted-effect stores (in memory; ~10–25 min on 2 cores).
calibrate: setup
	"$(PY)" -m gclab.planted.calibrate --out "$$OUT"

# Lint, format and types are checked first (pyproject.toml [tool.ruff], [tool.basedpyright]): a violation,
# an unresolved import included, fails the build.
test: setup
	"$(VENV)/bin/ruff" check .
	"$(VENV)/bin/ruff" format --check .
	"$(VENV)/bin/basedpyright" --pythonpath "$(PY)"
	"$(PY)" -m pytest -n 2 tests

# Issue 23's acceptance as written: the whole demo sweep by two collectors at once into a loopback S3
# server (moto, started by the test), its claims equal to a local demo store's (~15 min on 2 cores).
test-s3-demo: setup
	GCLAB_TEST_S3_DEMO=1 "$(PY)" -m pytest -p no:xdist tests/store/test_s3_collect.py -k demo_sweep

# The pinned torch is named in the same pip call, so backpack's torchvision resolves to a
# build for that torch instead of replacing it; the check fails loudly if it did not.
$(BENCH_STAMP): $(STAMP)
	"$(PY)" -m pip install -q --disable-pip-version-check $(TORCH) -e ".[dev,ray,bench]"
	"$(PY)" -c "import sys, torch; a = sys.argv[1]; want = a.split('==')[1].split()[0] if '==' in a else torch.__version__; sys.exit(0 if torch.__version__.startswith(want) else 'bench extra replaced torch: ' + torch.__version__)" "$(TORCH)"
	# PyPI's torchvision is built for the CUDA torch and cannot load against the CPU build; BackPACK
	# only declares it, and a broken torchvision breaks Lightning's optional import of it.
	"$(PY)" -c "import torchvision" 2>/dev/null || "$(PY)" -m pip uninstall -y -q torchvision
	@touch $(BENCH_STAMP)

# The catalogue of 8 nets (gclab/bench/nets.py) and the other sections; `make bench QUICK=1`: 3 short rounds per net.
bench: $(BENCH_STAMP)
	"$(GCLAB)" bench --out "$$OUT" $(if $(QUICK),--quick)

# The store at 1k, 10k and 100k runs × 1,000 steps (gclab/bench/store.py) → $(OUT)/bench_store.json;
# `make bench-store SIZES="1000 10000"` for fewer. The 100k store takes several GB of free disk while it runs.
bench-store: $(STAMP)
	"$(PY)" -m gclab.bench.store --out "$$OUT" $${SIZES:+--sizes $$SIZES}

clean:
	rm -rf "$(VENV)" .pytest_cache build *.egg-info "$${OUT:?}"/*
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# Deleting runs is never a side effect of another target.
clean-data:
	rm -rf "$${DATA:?}/runs" "$${DATA:?}/runs.duckdb" "$${DATA:?}/.verified.json"
