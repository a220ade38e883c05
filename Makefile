# Each target creates .venv and installs the pinned requirements by itself.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STACK ?= dev

.PHONY: render test bench clean

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

render: $(VENV)/.installed  ## render and validate a stack offline: make render STACK=dev
	$(PY) -m tools.render --stack $(STACK)

test: $(VENV)/.installed  ## the test suite, Pulumi mocks only
	$(PY) -m pytest -q

bench: $(VENV)/.installed  ## median wall time of `make render` against `import pulumi_kubernetes`
	$(PY) -m tools.bench --stack $(STACK)

clean:
	rm -rf build $(VENV)
