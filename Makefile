# One entry point for people and CI. `make test` sets everything up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU wheel on disk here; pinned so pip never pulls a multi-GB CUDA build on a CPU machine.
TORCH_SPEC ?= torch==2.13.0
# the versions CI tested (see its header; `make lock` rewrites it)
CONSTRAINTS ?= constraints.txt

.PHONY: install demo test test-kernels lint bench lock clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c $(CONSTRAINTS) --upgrade pip

install: $(PY)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q -c $(CONSTRAINTS) "$(TORCH_SPEC)"
	$(PY) -m pip install -q -c $(CONSTRAINTS) -e ".[dev]"

demo: install
	$(VENV)/bin/simec demo --out simec-demo
	@echo "open simec-demo/report.html"

test: install
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy

# the numerical tests again under each narrower CPU kernel set torch can run here (the portable
# "default", and AVX2 on an AVX-512 CPU): a result that depends on the kernels' rounding fails
# here. Tests marked `compiles` assert that torch.compile succeeds, which torch 2.13's inductor
# does not under the "default" set (it emits at::vec code without the vector headers).
NUMERIC_TESTS ?= tests/golden tests/geometry tests/explore tests/structure tests/interpret \
	tests/evaluate tests/explainers tests/models tests/test_stats.py
test-kernels: install
	@for cap in $$($(PY) -m tests.kernels); do \
		echo "== ATEN_CPU_CAPABILITY=$$cap"; \
		ATEN_CPU_CAPABILITY=$$cap $(PY) -m pytest -q -p no:cacheprovider -m "not compiles" \
			$(NUMERIC_TESTS) || exit 1; \
	done

# resolve pyproject's ranges anew in a scratch venv and rewrite constraints.txt (header kept)
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install -q --upgrade pip
	.lock-venv/bin/python -m pip install -q "$(TORCH_SPEC)"
	.lock-venv/bin/python -m pip install -q -e ".[dev]"
	{ grep '^#' $(CONSTRAINTS); .lock-venv/bin/python -m pip --version | awk '{print "pip==" $$2}'; \
	  .lock-venv/bin/python -m pip freeze --exclude-editable | sed -E 's/^(torch==[^+]*)\+.*/\1/'; \
	} > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)
	rm -rf .lock-venv

bench: install
	$(PY) benchmarks/bench_explore.py

clean:
	rm -rf $(VENV) .lock-venv build dist src/*.egg-info .pytest_cache
