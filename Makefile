# One entry point for people and CI. `make test` sets everything up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU wheel on disk here; pinned so pip never pulls a multi-GB CUDA build on a CPU machine.
TORCH_SPEC ?= torch==2.13.0

.PHONY: install demo test lint bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

install: $(PY)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"

demo: install
	$(VENV)/bin/simec demo --out simec-demo
	@echo "open simec-demo/report.html"

test: install
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy

bench: install
	$(PY) benchmarks/bench_explore.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
