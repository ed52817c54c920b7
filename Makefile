# rnn-dropout-bench. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
TORCH  ?= torch==2.13.0
# The shared mirror beside the checkout when it exists, else ./data (filled by `make data`).
DATA   ?= $(if $(wildcard ../shared/data/MANIFEST.tsv),../shared/data,data)
export BENCH_DATA := $(abspath $(DATA))

TASK     ?= ptb
METHOD   ?= zaremba
PROTOCOL ?= smoke
SEEDS    ?= $(if $(SEED),$(SEED),0)
DEVICE   ?= auto
SET      ?=
PERF     ?=

.PHONY: help install data bench leaderboard verify-seeds list test perf clean

help:
	@echo "make install                 create $(VENV) with pinned dependencies (CPU torch)"
	@echo "make data [DATASET=ptb]       verify datasets in DATA=$(DATA); download those missing"
	@echo "make bench TASK=ptb METHOD=zoneout [PROTOCOL=smoke|equal|paper] [SEEDS=0,1,2] [DEVICE=auto|cpu|cuda] [SET='lr=0.5 epochs=3']"
	@echo "make leaderboard              regenerate reports/LEADERBOARD.md from registry/"
	@echo "make verify-seeds             re-run registered CPU-feasible runs, fail if a metric differs"
	@echo "make list                     tasks, methods (with papers), protocols"
	@echo "make perf                     throughput benchmark -> reports/PERF.md"
	@echo "make test                     the test suite"

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip>=23"
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[test]"
	touch $@

data: install
	$(PY) -m bench data --fetch $(DATASET)

bench: install
	$(PY) -m bench run --task $(TASK) --method $(METHOD) --protocol $(PROTOCOL) --seeds $(SEEDS) \
	  --device $(DEVICE) $(foreach o,$(SET),--set $(o))

leaderboard: install
	$(PY) -m bench leaderboard

verify-seeds: install
	$(PY) -m bench verify-seeds

list: install
	$(PY) -m bench list

perf: install
	$(PY) -m bench.perf $(PERF)

test: install
	$(PY) -m pytest -q tests

clean:
	rm -rf runs .pytest_cache
