# Set-up is two commands: `make run` and `make test`. Both create .venv themselves.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench pagecount clean

$(STAMP): pyproject.toml
	@$(PY) -m venv $(VENV)
	@$(BIN)/pip install -q --upgrade pip
	@$(BIN)/pip install -q -e '.[test]'
	@touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/faasbox up --examples

test: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/mypy
	$(BIN)/python -m pytest -q tests

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/mypy

bench: $(STAMP)
	@command -v bwrap >/dev/null || [ "$$(id -u)" != 0 ] || \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q bubblewrap >/dev/null || true
	$(BIN)/python bench/run.py
	$(BIN)/python bench/triggers.py
	$(BIN)/python bench/isolation.py
	$(BIN)/python bench/auth.py

# The file pipeline of examples/pagecount, end to end, on an in-process platform.
pagecount: $(STAMP)
	$(BIN)/python examples/pagecount/pipeline.py --documents 1000 --drain-by-alarm

clean:
	rm -rf $(VENV) .faasbox
