# The one entry point for people and CI. `make help` lists the targets.

SHELL := /bin/bash
VENV := .venv
STAMP := $(VENV)/.installed
export SAM_CLI_TELEMETRY := 0

.PHONY: help setup test lint fmt clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

setup: $(STAMP) ## Install the Python tools (AWS emulator, SAM CLI, cfn-lint) into .venv

$(STAMP): requirements-dev.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

test: setup ## Run every test (unit and integration, against the local AWS emulator)
	cargo test --workspace

lint: setup ## Formatting, clippy and the SAM template
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	$(VENV)/bin/sam validate --lint

fmt: ## Format the code
	cargo fmt --all

clean: ## Remove build output and the virtualenv
	cargo clean
	rm -rf $(VENV) .aws-sam
