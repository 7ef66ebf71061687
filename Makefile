# sbilab — `make train` and `make test` are the whole set-up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ARGS ?=
# trainer=default (plateau decay, early stopping) adapts to each budget; the default run's cosine is set for 30k
SWEEP ?= estimator=zuko_maf_unconstrained,maf,mdn simulation.num_simulations=1000,3000,10000 trainer=default
TASKS ?= two_moons gaussian_linear gaussian_mixture slcp
METHODS ?= preset
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
LAUNCHER ?= joblib
PORT ?= 5000
SERVER_DIR ?= $(CURDIR)/.server
SERVER_WORKERS ?= 2
SERVER_HOST ?= 127.0.0.1
DB ?= $(CURDIR)/mlruns/mlflow.db
SERVICES := PYTHONPATH=$(CURDIR)/scripts $(CURDIR)/$(PY) -m services
MLRUNS ?= $(CURDIR)/mlruns
export PROJECT_ROOT := $(CURDIR)
export MLFLOW_DISABLE_TELEMETRY := true
export PYTHONWARNINGS := ignore::DeprecationWarning

.DEFAULT_GOAL := help
.PHONY: help install train cells test test-slow test-all lint simulate bench bench-diagnostics benchmark sweep new-model compare hpo register ui clean \
	services-install server server-status server-stop server-migrate

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  make %-15s %s\n", $$1, $$2}'
	@echo "  variables: ARGS='key=value ...' (train, sweep, hpo, benchmark), SWEEP='k=a,b ...' (sweep), JOBS (sweep: parallel jobs, default: cores), PORT, MLRUNS (ui)"
	@echo "             LAUNCHER=joblib|slurm|submitit_local (sweep: where the jobs run; slurm: docs/scale-out.md)"
	@echo "             TASKS='two_moons ...', METHODS='npe ...' (benchmark)"
	@echo "             SERVER_DIR (server data, default .server/), PORT, SERVER_HOST (server: 127.0.0.1; 0.0.0.0 for the LAN), DB (server-migrate)"

$(STAMP): pyproject.toml setup.py src/sbilab/simulators/_hh_kernel.c
	@command -v $(PYTHON) >/dev/null || { echo "sbilab: $(PYTHON) not found (Python 3.11 is required)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# CPU build of torch first, pinned: an unpinned torch would pull a multi-GB CUDA build
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test,services]'
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install sbilab with its test extras

train: $(STAMP) ## run the default experiment (the HH tutorial) into mlruns/
	$(PY) scripts/train.py $(ARGS)

test: $(STAMP) ## fast test suite (a test file per core at a time)
	$(PY) -m pytest -q -n $(JOBS) --dist loadfile $(ARGS)

test-slow: $(STAMP) ## only the tests marked slow (two files at a time, then the scale-out services one at a time)
	$(PY) -m pytest -q -m slow -n $(JOBS) --dist loadfile --durations=25 --ignore=tests/scaleout $(ARGS)
	$(PY) -m pytest -q -m slow tests/scaleout $(ARGS)

test-all: $(STAMP) ## every test, slow ones included
	$(PY) -m pytest -q -m "slow or not slow" $(ARGS)

lint: $(STAMP) ## ruff (pycodestyle, pyflakes, import order, bugbear) over src, tests and scripts
	$(VENV)/bin/ruff check src tests scripts

cells: $(STAMP) ## one network for many recorded cells, diagnosed at each (default: the ten Allen cells): make cells [ARGS=...]
	$(PY) scripts/train_cells.py experiment=allen_cells $(ARGS)

simulate: $(STAMP) ## fill the simulation cache without training (same overrides as train)
	$(PY) scripts/simulate.py $(ARGS)

bench: $(STAMP) ## simulation benchmark (kernel vs per-simulation loop, memory, workers)
	$(PY) scripts/bench.py $(ARGS)

bench-diagnostics: $(STAMP) ## every preset's diagnostics stage: exit, wall time, stage seconds, peak memory (own x_o and given x)
	$(PY) scripts/bench_diagnostics.py $(ARGS)

benchmark: $(STAMP) ## sbibm C2ST at 10k simulations (TASKS x METHODS, observations 1-10) into mlruns/ + outputs/benchmark/
	$(PY) scripts/benchmark.py --tasks $(TASKS) --methods $(METHODS) $(ARGS)

sweep: $(STAMP) ## parallel multirun, default: estimator x budget on HH; LAUNCHER=joblib (this machine) | slurm | submitit_local
	$(PY) scripts/train.py --multirun hydra/launcher=$(LAUNCHER) $(if $(filter joblib,$(LAUNCHER)),hydra.launcher.n_jobs=$(JOBS)) \
		$(SWEEP) $(ARGS)

new-model: $(STAMP) ## a function simulator, its configs and a test in DIR (default: here): make new-model NAME=my_model [DIR=...]
	@test -n "$(NAME)" || { echo "sbilab: error: NAME is not set: make new-model NAME=my_model [DIR=<your project folder>]"; exit 2; }
	$(VENV)/bin/sbilab new-model $(NAME) --dir $(or $(DIR),$(CURDIR))

compare: $(STAMP) ## comparison plots + table on a sweep's parent run: make compare SWEEP=<parent run id or sweep id>
	$(PY) scripts/compare.py $(SWEEP) $(ARGS)

hpo: $(STAMP) ## Optuna (TPE) search over estimator sizes and learning rate, trials as child runs
	$(PY) scripts/hpo.py $(ARGS)

register: $(STAMP) ## register a run's posterior as a model version: make register RUN=<run id> [NAME=...]
	$(PY) scripts/register.py $(RUN) $(if $(NAME),--name $(NAME)) $(ARGS)

ui: $(STAMP) ## MLflow UI on http://127.0.0.1:$(PORT) (local only; MLRUNS=<folder> for another store)
	@echo "sbilab: MLflow UI on http://127.0.0.1:$(PORT)/#/experiments?workflowType=machine_learning"
	@echo "sbilab: (MLflow opens in its GenAI view: pick 'Model training' at the top of the sidebar once, the browser keeps it)"
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///$(MLRUNS)/mlflow.db \
		--default-artifact-root file://$(MLRUNS)/artifacts --host 127.0.0.1 --port $(PORT)

services-install: ## Debian packages for the real services: PostgreSQL, MariaDB, munge, SLURM (root; idempotent)
	bash scripts/services/install.sh

server: $(STAMP) services-install ## team tracking server: mlflow server on PostgreSQL, basic auth, on 127.0.0.1:$(PORT); data in $(SERVER_DIR); Ctrl-C stops
	$(SERVICES) up --state $(SERVER_DIR) --host $(SERVER_HOST) --port $(PORT) --mlflow-workers $(SERVER_WORKERS) mlflow

server-status: $(STAMP) ## is the server of $(SERVER_DIR) up (exit 0), down (3)?
	$(SERVICES) status --state $(SERVER_DIR)

server-stop: $(STAMP) ## stop the server that `make server` runs (from another terminal)
	$(SERVICES) stop --state $(SERVER_DIR)

server-migrate: $(STAMP) ## copy an SQLite store into the running server, ids kept: make server-migrate [DB=mlruns/mlflow.db]
	$(SERVICES) migrate --state $(SERVER_DIR) $(DB)

clean: ## remove Hydra outputs, caches and build files (keeps mlruns/ and .venv)
	rm -rf outputs multirun .cache/simulations .pytest_cache build src/*.egg-info src/sbilab/simulators/*.so
	rm -f $(STAMP)   # the next make rebuilds the kernel
	find . -name __pycache__ -not -path './.venv/*' -prune -exec rm -rf {} +
