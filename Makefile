# Each target creates .venv and installs the pinned requirements by itself.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STACK ?= dev

VENV_CHECKOV := .venv-checkov

.PHONY: render test lint fuzz bench clean

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

render: $(VENV)/.installed  ## render and validate a stack offline: make render STACK=dev
	$(PY) -m tools.render --stack $(STACK)

test: $(VENV)/.installed  ## the test suite, Pulumi mocks only
	$(PY) -m pytest -q

$(VENV_CHECKOV)/.installed: requirements-checkov.txt
	$(PYTHON) -m venv $(VENV_CHECKOV)
	$(VENV_CHECKOV)/bin/pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	touch $@

lint: render $(VENV_CHECKOV)/.installed  ## hadolint and checkov (offline) on the Dockerfiles and the rendered manifests
	$(PY) -m tools.lint --stack $(STACK) --checkov $(VENV_CHECKOV)/bin/checkov

fuzz: $(VENV)/.installed  ## the long config-fuzzing run (make test runs a bounded one)
	HYPOTHESIS_PROFILE=fuzz $(PY) -m pytest -q tests/test_fuzz.py

bench: $(VENV)/.installed  ## median wall time of `make render` against `import pulumi_kubernetes`
	$(PY) -m tools.bench --stack $(STACK)

clean:
	rm -rf build $(VENV) $(VENV_CHECKOV) .venv-pipelines

.PHONY: bootstrap preflight

# AWS state backend of a cloud stack (bootstrap/aws.py). Variables, each also read from the environment:
#   STACK=prod  AWS_REGION=eu-west-1  STATE_BUCKET=acme-dataplatform-state
#   KMS_ALIAS=alias/dataplatform-prod (default alias/dataplatform-$(STACK))  PULUMI_ORG=<org> (optional)
# plus boto3's usual credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID, ...).
bootstrap: $(VENV)/.installed  ## create or verify the state bucket and secrets key: make bootstrap STACK=prod AWS_REGION=eu-west-1 STATE_BUCKET=acme-dataplatform-state
	$(PY) -m bootstrap.aws bootstrap --stack $(STACK)

preflight: $(VENV)/.installed  ## before `pulumi up`: identity, region, state bucket still versioned, encrypted, private: make preflight STACK=prod
	$(PY) -m bootstrap.aws preflight --stack $(STACK)

# The kfp pipeline compiler gets its own virtualenv: kfp needs protobuf 6, which requirements.txt cannot hold.
VENV_PIPELINES := .venv-pipelines

$(VENV_PIPELINES)/.installed: requirements-pipelines.txt
	$(PYTHON) -m venv $(VENV_PIPELINES)
	$(VENV_PIPELINES)/bin/pip install --quiet --disable-pip-version-check -r requirements-pipelines.txt
	touch $@

.PHONY: pipeline
pipeline: $(VENV_PIPELINES)/.installed  ## compile the example Kubeflow pipeline offline to build/pipelines/
	$(VENV_PIPELINES)/bin/python -m pipelines.train_and_serve --output build/pipelines/train_and_serve.yaml
