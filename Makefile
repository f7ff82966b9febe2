# Entry points for operators and developers. `make help` lists them.
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= python3
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
# Every molecule scenario, in the order make test runs them.
SCENARIOS ?= default
PLAYBOOKS := site.yml $(wildcard playbooks/*.yml)

.PHONY: help sandbox sandbox-down deploy test lint unit molecule host venv clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

sandbox: host venv ## Start the simulated GPU node(s) and run site.yml against them
	ansible-playbook tests/sim/lab/sandbox_up.yml -i inventories/sandbox
	ansible-playbook site.yml -i inventories/sandbox

sandbox-down: venv ## Remove the sandbox's simulated nodes
	ansible-playbook tests/sim/lab/sandbox_down.yml -i inventories/sandbox

deploy: venv ## Run site.yml against the production inventory (INVENTORY=inventories/prod)
	ansible-playbook site.yml -i $(or $(INVENTORY),inventories/prod) $(ARGS)

test: lint unit molecule ## The whole test suite (what CI runs)

lint: venv ## yamllint, ansible-lint (production profile), syntax check
	yamllint --strict .
	ansible-lint --profile production
	for playbook in $(PLAYBOOKS); do ansible-playbook --syntax-check -i inventories/sandbox $$playbook || exit 1; done

unit: venv ## pytest: plugins, stand-ins, rendered templates
	pytest

molecule: host venv ## Every molecule scenario, full sequence
	for scenario in $(SCENARIOS); do molecule test -s $$scenario || exit 1; done

host: ## Install the Debian packages the lab needs and start the Docker engine
	scripts/setup-dev-host.sh

venv: $(VENV)/.installed ## The Python virtualenv from requirements.txt
$(VENV)/.installed: requirements.txt requirements.yml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements.txt
	$(VENV)/bin/ansible-galaxy collection install -r requirements.yml
	touch $@

clean: sandbox-down ## Remove the sandbox and the virtualenv
	rm -rf $(VENV) .cache
