# The two commands of the README's quick start: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint bench clean

$(BIN)/pilotfish: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

demo: $(BIN)/pilotfish
	$(BIN)/pilotfish demo --duration 30 --chaos

test: $(BIN)/pilotfish
	./scripts/system-deps
	$(BIN)/ruff check .
	$(BIN)/pytest -q

lint: $(BIN)/pilotfish
	$(BIN)/ruff check .

bench: $(BIN)/pilotfish
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python -m bench.run

# Back to the tree as cloned: everything the targets above, pip and the tools leave behind.
clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis build dist *.egg-info bench/results
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
