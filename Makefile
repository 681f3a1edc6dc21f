# clinfuse — the two commands of the README, and their set-up.
#   make demo   set up, generate a phantom cohort, run the whole pipeline, print where results are
#   make test   set up, then run the whole test suite (what CI runs)
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

BIN   := $(VENV)/bin
STAMP := $(VENV)/.clinfuse-installed

.PHONY: demo test install browser clean help

help:
	@echo "make demo   - set up and run the whole pipeline on a $(DEMO_N)-patient phantom cohort"
	@echo "make test   - set up and run the test suite"

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
	bash scripts/demo.sh "$(DEMO_DIR)" "$(DEMO_N)"

test: install browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .clinfuse $(DEMO_DIR) test-artifacts .pytest_cache
