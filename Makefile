# Two entry points (see README): `make demo` and `make test`.
# Both create or reuse a local virtual environment in .venv and install what they need.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# pytest-xdist workers; 2 matches the 2-core CI machine.
WORKERS ?= 2

.PHONY: demo test venv clean bench

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) experiments/lenet5_digits.py --out runs/demo-lenet5-digits --overwrite

test: $(STAMP)
	$(PY) -m pytest -n $(WORKERS) --dist loadgroup -q --durations=30

clean:
	rm -rf $(VENV) runs .pytest_cache
