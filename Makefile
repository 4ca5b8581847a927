# `make demo` and `make test` each create .venv on first use and reinstall when setup.cfg changes.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.smartecg-installed
DEMO_DATA   ?= data/demo
DEMO_REPORT ?= reports/demo

.PHONY: demo test venv clean

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/smartecg data synth $(DEMO_DATA) --per-class 30 --seed 0 --six-by-two 0.3 --gridless 0.4 --header-diagnosis 0.3
	$(BIN)/smartecg data report $(DEMO_DATA) --out $(DEMO_REPORT)
	$(BIN)/smartecg search --data $(DEMO_DATA) --budget 3m --experiment quick

test: $(STAMP)
	$(BIN)/python -m pytest

clean:
	rm -rf $(DEMO_DATA) $(DEMO_REPORT) .pytest_cache  # mlruns/ (trials, registry) is kept
