# clinfuse — the two commands of the README, their set-up, and the servers to look at the results.
#   make demo   set up, generate a phantom cohort, run the whole pipeline, print where results are
#   make test   set up, install the Debian packages the tests drive, then run the whole test suite (CI)
#   make dashboard | mlflow-ui | prefect-ui | serve   browse the results of CLINFUSE_HOME (default .clinfuse)
#
# The server targets run `.venv/bin/...` (no activated virtualenv needed), bind HOST
# (127.0.0.1) and read the same home as `make demo`; override a port or the home with
# e.g. `make dashboard DASHBOARD_PORT=8600` or `make mlflow-ui CLINFUSE_HOME=/data/site`.
#
# TORCH_SPEC picks the torch build before the project installs, so pip does not
# resolve a bare `torch` on its own. The default pins a release: on a machine
# with a local wheel (pip find-links) that wheel is used; elsewhere PyPI's normal
# build for the platform (CUDA on Linux x86_64) is installed. For a CPU-only box
# without a local wheel use e.g.
#   make demo TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"

PYTHON     ?= python3
VENV       ?= .venv
TORCH_SPEC ?= torch==2.13.0
DEMO_DIR   ?= demo-cohort
DEMO_N     ?= 200
PYTEST_ARGS ?=
# Test files run on TEST_WORKERS processes (pytest-xdist), each file whole on one worker so its
# module fixtures start once; TEST_WORKERS=0 runs the suite in this one process.
TEST_WORKERS ?= 2
PYTEST_XDIST := $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)
CLINFUSE_HOME  ?= $(CURDIR)/.clinfuse
HOST           ?= 127.0.0.1
DASHBOARD_PORT ?= 8501
MLFLOW_PORT    ?= 5000
PREFECT_PORT   ?= 4200

BIN   := $(VENV)/bin
STAMP := $(VENV)/.clinfuse-installed

.PHONY: demo test install browser clean help dashboard mlflow-ui prefect-ui serve

help:
	@echo "make demo       - set up and run the whole pipeline on a $(DEMO_N)-patient phantom cohort"
	@echo "make test       - set up, install Debian test servers (apt), run the test suite"
	@echo "make dashboard  - clinician dashboard on http://$(HOST):$(DASHBOARD_PORT)"
	@echo "make mlflow-ui  - MLflow runs and registry on http://$(HOST):$(MLFLOW_PORT)"
	@echo "make prefect-ui - Prefect flow runs on http://$(HOST):$(PREFECT_PORT)"
	@echo "make serve      - team mode: Prefect, MLflow, workers and dashboard together"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install --quiet $(TORCH_SPEC)
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

# Real servers the tests drive (chromium, Orthanc + DICOMweb, PostgreSQL), from Debian (no downloads).
browser:
	@bash scripts/ensure-system-packages.sh

demo: install
	CLINFUSE_HOME="$(CLINFUSE_HOME)" bash scripts/demo.sh "$(DEMO_DIR)" "$(DEMO_N)"

# --- servers on the home's data (Ctrl-C stops each) ---
# They need an installed .venv but never reinstall one that exists (a newer pyproject.toml
# is `make install`'s business), so starting a server is never a pip run.
INSTALLED := $(BIN)/clinfuse
$(INSTALLED):
	@$(MAKE) --no-print-directory install

dashboard: $(INSTALLED)
	CLINFUSE_HOME="$(CLINFUSE_HOME)" $(BIN)/clinfuse dashboard --host $(HOST) --port $(DASHBOARD_PORT)

mlflow-ui: $(INSTALLED)
	@mkdir -p "$(CLINFUSE_HOME)"
	$(BIN)/mlflow ui --host $(HOST) --port $(MLFLOW_PORT) --workers 1 \
	  --backend-store-uri "sqlite:///$(CLINFUSE_HOME)/mlflow.db" --default-artifact-root "file://$(CLINFUSE_HOME)/mlartifacts"

# The database the in-process flows of `make demo` wrote (PREFECT_HOME under the home).
prefect-ui: $(INSTALLED)
	@mkdir -p "$(CLINFUSE_HOME)/prefect"
	PREFECT_HOME="$(CLINFUSE_HOME)/prefect" PREFECT_SERVER_ANALYTICS_ENABLED=false \
	  PREFECT_UI_API_URL="http://$(HOST):$(PREFECT_PORT)/api" \
	  $(BIN)/prefect server start --host $(HOST) --port $(PREFECT_PORT)

serve: $(INSTALLED)
	CLINFUSE_HOME="$(CLINFUSE_HOME)" CLINFUSE_BIND_HOST=$(HOST) $(BIN)/clinfuse serve \
	  --prefect-port $(PREFECT_PORT) --mlflow-port $(MLFLOW_PORT) --dashboard-port $(DASHBOARD_PORT)

# make test ends with pytest's per-test and per-file durations (pyproject addopts, tests/durations_report.py)
# and one line of the whole target's wall time, install and Debian packages included (CI's budget).
MAKE_STARTED := $(shell date +%s)
test: install browser
	@echo "$(BIN)/python -m pytest $(PYTEST_XDIST) $(PYTEST_ARGS)"; rc=0; $(BIN)/python -m pytest $(PYTEST_XDIST) $(PYTEST_ARGS) || rc=$$?; \
	  echo "make test: $$(( $$(date +%s) - $(MAKE_STARTED) )) s wall since make started (install, Debian packages, pytest); pytest exit $$rc"; \
	  exit $$rc

clean:
	rm -rf $(VENV) .clinfuse $(DEMO_DIR) test-artifacts .pytest_cache
