# The whole set-up is two commands: `make bench` and `make test`.
# Each creates .venv when it is missing and installs the pinned versions into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: bench test bench-pytest lint check demo clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[all,test]'
	touch $(STAMP)

bench: $(STAMP)
	$(BIN)/backprop-bench demo --epochs 100
	$(BIN)/backprop-bench run

check: $(STAMP)
	$(BIN)/backprop-bench check

demo: $(STAMP)
	$(BIN)/backprop-bench demo

test: $(STAMP)
	$(BIN)/python -m pytest -q --benchmark-skip
	$(BIN)/python -m pytest -q tests/bench --benchmark-disable

lint: $(STAMP)
	$(BIN)/ruff check implementations harness tests

clean:
	rm -rf $(VENV) .pytest_cache .benchmarks build *.egg-info

# The same Trainers through pytest-benchmark, each run saved under results/pytest-bench/;
#   make bench-pytest BENCH_ARGS="--benchmark-compare --benchmark-compare-fail=median:10%"
# compares with the last saved run and fails on a regression.
BENCH_ARGS ?=
bench-pytest: $(STAMP)
	$(BIN)/python -m pytest tests/bench -q --benchmark-only \
		--benchmark-storage=results/pytest-bench --benchmark-autosave $(BENCH_ARGS)
