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
	$(BIN)/backprop-bench check --widths 4,16,16,4 --activation tanh --bias --dtype float32,float64

demo: $(STAMP)
	$(BIN)/backprop-bench demo

test: $(STAMP)
	$(BIN)/python -m pytest -q --benchmark-skip

lint: $(STAMP)
	$(BIN)/ruff check implementations harness tests

clean:
	rm -rf $(VENV) .pytest_cache .benchmarks build *.egg-info

# The same Trainers through pytest-benchmark; compare runs with
#   .venv/bin/pytest-benchmark compare results/pytest-bench/*.json
bench-pytest: $(STAMP)
	mkdir -p results/pytest-bench
	$(BIN)/python -m pytest tests/bench -q --benchmark-only \
		--benchmark-json=results/pytest-bench/bench-$$(date +%Y%m%d-%H%M%S).json
