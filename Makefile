# vemkit developer entry points. `make demo` and `make test` are the README's two commands.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The local CPU wheel of PyTorch; any other spelling would pull GBs of CUDA packages.
TORCH  ?= torch==2.13.0

.PHONY: demo test lint bench bench-quick install clean

$(BIN)/vemkit: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(BIN)/vemkit

install: $(BIN)/vemkit

demo: install
	$(BIN)/vemkit demo --output vemkit-demo --overwrite

test: install
	$(BIN)/python -m pytest -q -p no:cacheprovider

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/lint-imports

bench: install
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	$(BIN)/python benchmarks/run.py --output BENCHMARKS.md

bench-quick: install
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	$(BIN)/python benchmarks/run.py --quick --output bench-output/BENCHMARKS-quick.md

clean:
	rm -rf vemkit-demo bench-output .pytest_cache
