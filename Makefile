# The one entry point for people and CI. `make help` lists the targets.

SHELL := /bin/bash
VENV := .venv
STAMP := $(VENV)/.installed
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
export SAM_CLI_TELEMETRY := 0

API_PORT ?= 3000
INSPECTOR_PORT ?= 3001
EMULATOR_PORT ?= 4566
MUTANTS_VERSION := 27.1.0

.PHONY: help setup test lint fmt clean dev build smoke bench invoke mutants ui-test screenshots

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

setup: $(STAMP) ## Install the Python tools (AWS emulator, SAM CLI, cfn-lint, schemathesis) into .venv

$(STAMP): requirements-dev.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

$(CHECKOV_STAMP): requirements-checkov.txt
	python3 -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	touch $@

test: setup ## Run every test: unit, integration (local AWS emulator), and the API against its OpenAPI description
	cargo test --workspace
	cargo test -p integration-tests --test it -- --ignored
	scripts/schemathesis.sh

dev: setup ## Run the whole service locally (API :3000, inspector :3001, AWS emulator :4566)
	@env -u AWS_PROFILE -u AWS_SESSION_TOKEN \
	  AWS_ENDPOINT_URL=http://127.0.0.1:$(EMULATOR_PORT) AWS_REGION=us-east-1 \
	  AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local AWS_EC2_METADATA_DISABLED=true \
	  API_PORT=$(API_PORT) INSPECTOR_PORT=$(INSPECTOR_PORT) EMULATOR_PORT=$(EMULATOR_PORT) \
	  cargo run --quiet -p local-stack

build: setup ## Package the functions for Lambda (sam build: cargo-lambda, arm64)
	rustup target add aarch64-unknown-linux-gnu
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/sam build
	@ls -l .aws-sam/build/*/bootstrap

bench: setup ## Benchmarks: writes BENCHMARKS.md and bench/results.json (release build)
	cargo build --release -p config-api -p sender -p sweeper -p bench
	cargo run --release --quiet -p bench

smoke: setup ## Start make dev, deliver one event, run make invoke for each function, stop it
	scripts/dev-smoke.sh

invoke: setup ## Run a handler on an event against make dev: FUNCTION=SenderFunction EVENT=events/sqs-delivery.json
	FUNCTION="$(FUNCTION)" EVENT="$(EVENT)" EMULATOR_PORT=$(EMULATOR_PORT) scripts/invoke.sh

ui-test: setup ## The settings page in headless Chromium (Debian's, installed with apt-get if missing), driven by Playwright
	scripts/ui-test.sh

screenshots: setup ## Regenerate the settings page screenshots in docs/ (the README shows them)
	SCREENSHOTS=$(CURDIR)/docs scripts/ui-test.sh

mutants: ## Mutation testing of the pure rules (domain/): fails on any surviving mutant
	@cargo mutants --version 2>/dev/null | grep -qx 'cargo-mutants $(MUTANTS_VERSION)' \
	  || cargo install --locked cargo-mutants@$(MUTANTS_VERSION)
	scripts/mutants.sh

lint: setup $(CHECKOV_STAMP) ## Formatting, clippy, and the template (sam validate, cfn-lint with informational rules, checkov)
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	$(VENV)/bin/sam validate --lint
	$(VENV)/bin/cfn-lint --include-checks I -- template.yaml
	$(CHECKOV_VENV)/bin/checkov --file template.yaml --framework cloudformation --skip-download --quiet --compact

fmt: ## Format the code
	cargo fmt --all

clean: ## Remove build output and the virtualenv
	cargo clean
	rm -rf $(VENV) $(CHECKOV_VENV) .aws-sam target-mutants
