# xcf: `make demo` runs the main job on the shipped default pack, `make test` runs the tests.
# Both create .venv (if missing) and install the repo into it from its own files.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.xcf-installed

.PHONY: demo test lint venv clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/xcf demo --out demo-out

test: $(STAMP)
	$(PY) -m pytest -q
	$(VENV)/bin/ruff check xcf plugins tests benchmarks

lint: $(STAMP)
	$(VENV)/bin/ruff check xcf plugins tests benchmarks

clean:
	rm -rf $(VENV) demo-out build *.egg-info
