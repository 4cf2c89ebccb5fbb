# Every target builds what it needs from nothing: a fresh clone needs only `make test` / `make demo`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
BIN := $(VENV)/bin
PYTHON := $(BIN)/python
# The roots every process puts on sys.path (as Lambda puts the layer there); in the stamp, so a new root
# reaches an existing venv's .pth file too.
PACKAGE_ROOTS := layers/common functions/router functions/model_sync functions/quality functions/rollouts .
STAMP := $(VENV)/.installed-$(shell { cat requirements/dev.txt requirements/constraints.txt; echo '$(PACKAGE_ROOTS)'; } | md5sum | cut -c1-12)
# `sam build` for the python3.13 runtime needs python3.13 on PATH (pyenv provides it here).
export PYENV_VERSION ?= 3.11.7:3.13.0
export SAM_CLI_TELEMETRY := 0
export AWS_DEFAULT_REGION ?= us-east-1
REGION ?= $(AWS_DEFAULT_REGION)
PYTEST_ARGS ?=
BENCH_STAMP := $(VENV)/.bench-$(shell cat requirements/bench.txt | md5sum | cut -c1-12)
MLSERVER_VENV := build/bench/mlserver-venv
MLSERVER_STAMP := $(MLSERVER_VENV)/.installed-$(shell cat requirements/bench-mlserver.txt | md5sum | cut -c1-12)
LAMBDA_RUNTIME := build/bench/lambda-runtime
LAMBDA_RUNTIME_STAMP := $(LAMBDA_RUNTIME)/.installed-$(shell cat requirements/lambda-runtime.txt | md5sum | cut -c1-12)
BENCH_ARGS ?=

.PHONY: help venv test lint format cfn-lint sam-validate sam-build unit integration e2e demo demo-quality demo-rollout up deploy preflight invoke bench bench-quick bench-quality bench-deps bench-http-api lambda-runtime wrk clean

help: ## list targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-15s %s\n", $$1, $$2}'

$(STAMP): requirements/dev.txt requirements/constraints.txt
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet -r requirements/dev.txt -c requirements/constraints.txt
	# Put the layer, function and project roots on the venv's path, as Lambda and SageMaker do.
	$(PYTHON) -c 'import site,os,sys; open(os.path.join(site.getsitepackages()[0], "house_price_mme.pth"), "w").write("\n".join(os.path.abspath(p) for p in sys.argv[1:]) + "\n")' $(PACKAGE_ROOTS)
	rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP) ## create .venv with the pinned dependencies


lint: $(STAMP) ## ruff lint + format check + mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP) ## apply ruff fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

cfn-lint: $(STAMP) ## lint template.yaml
	$(BIN)/cfn-lint template.yaml

sam-validate: $(STAMP) ## sam validate --lint
	$(BIN)/sam validate --lint --region $(REGION)

sam-build: $(STAMP) ## sam build (python3.13)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/sam build --region $(REGION)

test: lint cfn-lint sam-validate sam-build ## the whole suite: lint, template checks, sam build, pytest
	$(BIN)/pytest $(PYTEST_ARGS)

unit: $(STAMP) ## unit tests only (no sockets)
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

integration: $(STAMP) ## integration tests (handlers + moto, real local servers)
	$(BIN)/pytest tests/integration $(PYTEST_ARGS)

e2e: $(STAMP) ## the whole local stack over HTTP
	$(BIN)/pytest tests/e2e $(PYTEST_ARGS)

# The region is REGION=, else AWS_REGION, AWS_DEFAULT_REGION, the profile's (AWS_PROFILE): the deploy
# script decides. The default AWS_DEFAULT_REGION above is for local targets only and is unset here, so it
# never overrides the profile's region; REGION itself reaches the script through the environment.
DEPLOY_ENV = $(if $(filter file,$(origin AWS_DEFAULT_REGION)),unset AWS_DEFAULT_REGION;)
deploy: $(STAMP) ## preflight, package + upload sourcedir.tar.gz, sam build, sam deploy (REGION= CONFIG_ENV=prod DEPLOY_BUCKET= SKIP_PREFLIGHT=1 DRY_RUN=1)
	$(DEPLOY_ENV) $(PYTHON) scripts/deploy.py $(if $(DRY_RUN),--dry-run) $(DEPLOY_ARGS)

preflight: $(STAMP) ## would make deploy work in this account and region? each problem with its fix (REGION= CONFIG_ENV=)
	$(DEPLOY_ENV) $(PYTHON) -m ops preflight

demo: $(STAMP) ## the original notebook end to end on the local stack (no AWS, no Docker)
	$(PYTHON) -m local.demo

demo-quality: $(STAMP) ## the quality loop on the local stack: replayed traffic, late labels; finds a drifting city and a worse model
	$(PYTHON) -m local.demo_quality

demo-rollout: $(STAMP) ## progressive delivery on the local stack: a shadow and a canary rollout; one promoted, one rolled back
	$(PYTHON) -m local.demo_rollout

up: $(STAMP) ## run the local stack until Ctrl-C; state persists in .local/state (FRESH=1 starts empty; SERVING=dense: the dense container)
	$(PYTHON) -m local.stack $(if $(FRESH),--fresh) $(if $(SERVING),--serving $(SERVING))

invoke: $(STAMP) ## run a handler in process: make invoke FN=RouterFunction EVENT=events/api-get-health.json
	@test -n "$(FN)" -a -n "$(EVENT)" || { echo "usage: make invoke FN=<logical id> EVENT=<event.json>"; exit 2; }
	$(PYTHON) -m local.lambda_runtime $(FN) $(EVENT)

wrk: ## install the wrk load generator (Debian package) if it is missing
	@command -v wrk >/dev/null || { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk >/dev/null; }

$(BENCH_STAMP): $(STAMP) requirements/bench.txt
	$(BIN)/pip install --quiet -r requirements/bench.txt -c requirements/constraints.txt
	rm -f $(VENV)/.bench-* && touch $@

# MLServer gets its own venv: its pins (fastapi, pydantic, uvloop<0.22, ...) are not this project's.
$(MLSERVER_STAMP): requirements/bench-mlserver.txt
	rm -rf $(MLSERVER_VENV)
	python3.11 -m venv $(MLSERVER_VENV)
	$(MLSERVER_VENV)/bin/pip install --quiet -r requirements/bench-mlserver.txt
	touch $@

# The router's cold import is measured through the real Lambda runtime's bootstrap (python3.13, this machine's platform).
$(LAMBDA_RUNTIME_STAMP): requirements/lambda-runtime.txt
	rm -rf $(LAMBDA_RUNTIME)
	python3.13 -m pip install --quiet --disable-pip-version-check --no-deps --root-user-action=ignore \
		--requirement requirements/lambda-runtime.txt --target $(LAMBDA_RUNTIME)
	touch $@

lambda-runtime: $(LAMBDA_RUNTIME_STAMP) ## the Lambda runtime interface client (python3.13) for bench/router_import_time.py

bench-deps: wrk $(BENCH_STAMP) $(MLSERVER_STAMP) $(LAMBDA_RUNTIME_STAMP) ## wrk, chart and uvloop packages, MLServer's venv, Lambda's runtime client

bench: sam-build bench-deps ## one run: endpoint vs ceiling and peers, cold loads, scale; writes docs/benchmarks.md
	$(PYTHON) bench/suite.py --mlserver $(MLSERVER_VENV)/bin/mlserver $(BENCH_ARGS)
	$(PYTHON) bench/segments_scale.py
	$(PYTHON) bench/density.py

bench-quick: bench-deps ## smoke run of the bench (short rounds, few models; report to build/bench/)
	$(PYTHON) bench/suite.py --quick --no-legacy --mlserver $(MLSERVER_VENV)/bin/mlserver --docs build/bench/quick/benchmarks.md $(BENCH_ARGS)
	$(PYTHON) bench/segments_scale.py --quick --docs build/bench/quick/benchmarks.md
	$(PYTHON) bench/density.py --quick

bench-quality: $(STAMP) ## live quality aggregation: 1M captured predictions + 100k labels over 10k cities (one core)
	$(PYTHON) bench/quality_aggregation.py $(BENCH_ARGS)

bench-http-api: wrk $(BENCH_STAMP) ## local HTTP API throughput vs a bare ceiling (wrk, interleaved; --json for reports)
	$(PYTHON) bench/http_api_throughput.py $(BENCH_ARGS)

clean: ## remove build outputs and local state (keeps .venv)
	rm -rf .aws-sam .local build

# --- The dense multi-model container (container/, docs/container.md) ---------------------------------------
# One venv from the image's pinned requirements (Python 3.12, as in the image); tests/integration/
# test_container_image.py builds the same one (same stamp), so either may create it.
CONTAINER_VENV := build/container-venv
CONTAINER_STAMP := $(CONTAINER_VENV)/.installed-$(shell sha256sum requirements/container.txt | cut -c1-12)
CONTAINER_PYTHON ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3.12) $(shell command -v python3.12))
IMAGE_NAME ?= house-prices-dense-mme
IMAGE_TAG ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo latest)
IMAGE_TOOL ?= $(firstword $(shell command -v docker podman buildah 2>/dev/null))
AWS ?= aws
PORT ?= 8080
HOST ?= 127.0.0.1
# Outside a container there is no cgroup limit: the budget is this less headroom (docs/container.md).
CONTAINER_MEMORY_BYTES ?= 4294967296
MODEL_ROOT ?= $(CURDIR)/build/container-models

.PHONY: image image-push serve-container

$(CONTAINER_STAMP): requirements/container.txt
	@test -n "$(CONTAINER_PYTHON)" || { echo "serve-container needs Python 3.12 (the image's): pyenv install 3.12"; exit 2; }
	rm -rf $(CONTAINER_VENV)
	$(CONTAINER_PYTHON) -m venv $(CONTAINER_VENV)
	$(CONTAINER_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -r requirements/container.txt
	touch $@

serve-container: $(CONTAINER_STAMP) ## the image's command (python -m container serve) in the foreground: PORT, MODEL_ROOT, CONTAINER_MEMORY_BYTES
	mkdir -p $(MODEL_ROOT)
	PYTHONPATH=$(CURDIR):$(CURDIR)/layers/common PYTHONUNBUFFERED=1 MALLOC_ARENA_MAX=2 \
		CONTAINER_HOST=$(HOST) CONTAINER_PORT=$(PORT) CONTAINER_MODEL_ROOT=$(MODEL_ROOT) \
		CONTAINER_MEMORY_BYTES=$(CONTAINER_MEMORY_BYTES) \
		$(CONTAINER_VENV)/bin/python -m container serve

image: ## build the dense container image (container/Dockerfile) with docker, podman or buildah: IMAGE_NAME, IMAGE_TAG
	@test -n "$(IMAGE_TOOL)" || { echo "make image needs docker, podman or buildah"; exit 2; }
	$(IMAGE_TOOL) build -f container/Dockerfile -t $(IMAGE_NAME):$(IMAGE_TAG) .

image-push: image ## push the image to ECR (account: aws sts get-caller-identity; REGION); prints the image URI
	@set -euo pipefail; \
	account=$$($(AWS) sts get-caller-identity --query Account --output text); \
	registry=$$account.dkr.ecr.$(REGION).amazonaws.com; \
	$(AWS) ecr describe-repositories --region $(REGION) --repository-names $(IMAGE_NAME) >/dev/null 2>&1 || \
		$(AWS) ecr create-repository --region $(REGION) --repository-name $(IMAGE_NAME) \
			--image-scanning-configuration scanOnPush=true >/dev/null; \
	$(AWS) ecr get-login-password --region $(REGION) | $(IMAGE_TOOL) login --username AWS --password-stdin $$registry; \
	$(IMAGE_TOOL) tag $(IMAGE_NAME):$(IMAGE_TAG) $$registry/$(IMAGE_NAME):$(IMAGE_TAG); \
	$(IMAGE_TOOL) push $$registry/$(IMAGE_NAME):$(IMAGE_TAG); \
	echo "image: $$registry/$(IMAGE_NAME):$(IMAGE_TAG)"
