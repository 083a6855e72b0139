# The project's commands. `make demo` and `make test` work on a fresh machine with Python 3.11.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch is pinned to the CPU build that these machines carry; a looser pin pulls a multi-GB GPU build.
TORCH := torch==2.13.0

.PHONY: demo test lint bench retrain-llm-head clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.base: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q "$(TORCH)" -e ".[torch,llm]"
	touch $@

$(VENV)/.dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q "$(TORCH)" -e ".[dev]"
	touch $@ $(VENV)/.base

$(VENV)/.bench: pyproject.toml $(VENV)/.dev
	$(BIN)/pip install -q "$(TORCH)" -e ".[bench]"
	# torchattacks declares torchvision and an old requests but imports neither; modelscan pins
	# an older rich than ours. Both run fine without those constraints.
	$(BIN)/pip install -q --no-deps torchattacks==3.5.1 modelscan==0.8.8
	touch $@

demo: $(VENV)/.base
	$(BIN)/bastion demo

test: $(VENV)/.dev
	$(BIN)/pytest -n 2 -m "not slow" -q

lint: $(VENV)/.dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

bench: $(VENV)/.bench
	# the gateway and defence benchmarks drive the servers with wrk (Debian package)
	command -v wrk >/dev/null || (apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk)
	$(BIN)/pytest -m slow -q
	for script in benchmarks/*.py; do $(BIN)/python $$script || exit 1; done

# Retrain the shipped prompt-injection head from ../shared/data/prompt-injection (seed 0).
retrain-llm-head: $(VENV)/.dev
	$(BIN)/python -m bastion.llm.train --data ../shared/data/prompt-injection --seed 0 --group-cv 5

clean:
	rm -rf $(VENV) bastion-report .pytest_cache .mypy_cache .ruff_cache
