# Two commands on a fresh machine:  `make demo` (install + ingest data/ + cited answer)  and  `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
INDEX  ?= .ragkit-demo
QUESTION ?= When was Voyager 1 launched, and what did it find in 2012?

.PHONY: demo test install install-dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch first, pinned to the local CPU wheel: otherwise sentence-transformers pulls multi-GB CUDA builds.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: install
	$(BIN)/ragkit ingest data --index $(INDEX) --pipeline pipelines/default.yaml
	$(BIN)/ragkit query "$(QUESTION)" --index $(INDEX)

test: install-dev
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) $(INDEX) .ragkit
