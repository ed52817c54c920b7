# rnn-dropout-bench. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
TORCH  ?= torch==2.13.0
LOCK   := requirements.lock
LOCKENV  ?= /tmp/rnn-bench-lockenv
PIPTOOLS := pip-tools==7.6.2
# torch is resolved as $(TORCH) (so its pure-python deps are locked) but not written to the lock.
LOCKARGS := --extra test --extra ray --unsafe-package torch --no-strip-extras --no-emit-index-url \
  --no-emit-find-links
# $BENCH_DATA when set, else the shared mirror beside the checkout when it exists, else ./data
# (filled by `make data`).
DATA   ?= $(or $(BENCH_DATA),$(if $(wildcard ../shared/data/MANIFEST.tsv),../shared/data,data))
export BENCH_DATA := $(abspath $(DATA))

TASK     ?= ptb
METHOD   ?= zaremba
PROTOCOL ?= smoke
SEEDS    ?= $(if $(SEED),$(SEED),0)
DEVICE   ?= auto
SET      ?=
PERF     ?=
# CPU numerics (bench/numerics.py): `portable` rows come out close on any x86-64 host (smoke rows,
# re-run in CI), `native` runs the CPU's fastest kernels (several times faster: long protocols).
NUMERICS ?= $(if $(filter smoke,$(PROTOCOL)),portable,native)

.PHONY: help install lock data bench leaderboard verify-seeds list test perf clean

help:
	@echo "make install                 create $(VENV) with pinned dependencies (CPU torch)"
	@echo "make lock                    regenerate requirements.lock (pip-tools) from pyproject.toml"
	@echo "make data [DATASET=ptb]       verify datasets in DATA=$(DATA); download those missing"
	@echo "make bench TASK=ptb METHOD=zoneout [PROTOCOL=smoke|equal|paper] [SEEDS=0,1,2] [DEVICE=auto|cpu|cuda] [SET='lr=0.5 epochs=3']"
	@echo "make campaign PLAN=smoke [WORKERS=2] [BACKEND=local|ray] [BUDGET=minutes] [DEVICE=...] [DRY=1] [PACK=auto]  a plan of plans/*.toml, or several: PLAN=a,b (docs/campaigns.md)"
	@echo "make leaderboard              regenerate reports/LEADERBOARD.md from registry/"
	@echo "make report                   statistics, ranks, curves, sensitivity -> reports/REPORT.md + reports/figures/"
	@echo "make verify-seeds             check every row's consistency, replay registered runs, fail if a metric differs"
	@echo "     UNCOMMITTED=1            only the rows git does not track yet (verify before committing)"
	@echo "     FULL=<run id|glob>       replay those rows' whole training, compare results (logged to registry/VERIFIED.tsv)"
	@echo "     CONSISTENCY=1            only the consistency checks of every row (seconds, no training)"
	@echo "make list                     tasks, methods (with papers), protocols"
	@echo "make perf [PERF='--cells gru']  throughput of every method next to nn.LSTM and nn.GRU -> reports/PERF.md"
	@echo "make test                     the test suite"

install: $(VENV)/.installed

# Every dependency but torch at the exact version of $(LOCK); torch from $(TORCH) in the same pip
# call (its CUDA-only deps, nvidia-* and triton, are not locked), then the project (no deps, built with the locked setuptools).
$(VENV)/.installed: pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip>=23"
	$(PY) -m pip install -q "$(TORCH)" -r $(LOCK)
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

# Regenerate $(LOCK) with pip-tools from a throwaway venv; kept pins stay unless UPGRADE=-U.
lock:
	$(PYTHON) -m venv $(LOCKENV)
	$(LOCKENV)/bin/pip install -q "$(PIPTOOLS)"
	CUSTOM_COMPILE_COMMAND='make lock  ($(PIPTOOLS): pip-compile $(LOCKARGS) -P $(TORCH) -o $(LOCK) pyproject.toml)' \
	  $(LOCKENV)/bin/pip-compile -q $(UPGRADE) $(LOCKARGS) -P "$(TORCH)" -o $(LOCK) pyproject.toml

data: install
	$(PY) -m bench data --fetch $(DATASET)

bench: install
	BENCH_NUMERICS=$(NUMERICS) $(PY) -m bench run --task $(TASK) --method $(METHOD) --protocol $(PROTOCOL) --seeds $(SEEDS) \
	  --device $(DEVICE) $(foreach o,$(SET),--set $(o))

# A plan of many runs (bench/campaign.py, docs/campaigns.md): registered runs are skipped, checkpointed
# ones resume; BUDGET in minutes (empty: none); DRY=1 prints the pending runs with estimated times.
PLAN    ?= smoke
WORKERS ?= 1
BACKEND ?= local
BUDGET  ?=
DRY     ?=
PACK    ?= off
.PHONY: campaign
campaign: install
	$(PY) -m bench.campaign --plan $(PLAN) --workers $(WORKERS) --backend $(BACKEND) --device $(DEVICE) \
	  $(if $(BUDGET),--budget $(BUDGET)) $(if $(DRY),--dry-run) --pack $(PACK)

leaderboard: install
	$(PY) -m bench leaderboard

.PHONY: report
report: install
	$(PY) -m bench.report

# FULL=<run id|glob>: replay those rows' whole training (and only those); ROTATION=N: also replay N long
# rows in full, chosen from the commit (CI); CONSISTENCY=1: only the consistency checks (seconds);
# SMOKE_MAX_S=S: smoke rows that trained longer than S s replay their first steps, all but ROTATION of them (CI).
verify-seeds: install
	$(PY) -m bench verify-seeds $(if $(SWEEP_SAMPLE),--sweep-sample $(SWEEP_SAMPLE)) $(if $(UNCOMMITTED),--uncommitted) \
	  $(if $(FULL),--full '$(FULL)') $(if $(ROTATION),--rotation $(ROTATION)) $(if $(CONSISTENCY),--consistency) \
	  $(if $(SMOKE_MAX_S),--smoke-max-s $(SMOKE_MAX_S))

list: install
	$(PY) -m bench list

# Throughput is measured with the CPU's fastest kernels (native numerics, as reports/PERF.md is).
PERF_NUMERICS ?= native
perf: install
	BENCH_NUMERICS=$(PERF_NUMERICS) $(PY) -m bench.perf --packs on $(PERF)

# TEST_WORKERS pytest-xdist processes (0: in this one); a file's tests stay in one worker (their
# module fixtures). Measured: 883 tests in 204 s with 2 workers on 2 cores; serially they wait on
# subprocesses, leaving a core idle (880 s beside a campaign on the other core).
TEST_WORKERS ?= 2
test: install
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile tests

clean:
	rm -rf runs .pytest_cache
