# Entry points for operators and developers. `make help` lists them.
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= python3
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
# The molecule scenarios make test runs: one node end to end with idempotence, bad inputs, faults and secrets
# (its table goes to reports/reliability/reliability.md; `make test-faults` rewrites docs/reliability.md), then
# the fleet's rolling updates. `default` (the node end to end and its
# checks, without the reliability suite) is the quick one for development: `molecule test`.
SCENARIOS ?= reliability fleet
PLAYBOOKS := site.yml $(wildcard playbooks/*.yml)
# The platform the sandbox's node presents (docs/simulated-lab.md): debian-12 with MI300X (the quickest),
# ubuntu-22.04 with MI355X or ubuntu-24.04 with MI325X. A later `make sandbox` keeps the one last chosen.
SANDBOX_PLATFORM_FILE := .cache/sandbox/platform
PLATFORM ?= $(shell cat $(SANDBOX_PLATFORM_FILE) 2>/dev/null || echo debian-12)

.PHONY: help sandbox sandbox-down deploy benchmark test test-faults lint unit molecule host venv lock clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

sandbox: host venv ## Start the simulated GPU node (PLATFORM=debian-12|ubuntu-22.04|ubuntu-24.04), run site.yml on it
	ansible-playbook lab/playbooks/sandbox_up.yml -i inventories/sandbox -e lab_platform=$(PLATFORM)
	ansible-playbook site.yml -i inventories/sandbox

sandbox-down: venv ## Remove the sandbox's simulated nodes
	ansible-playbook lab/playbooks/sandbox_down.yml -i inventories/sandbox

deploy: venv ## Run site.yml against the production inventory (INVENTORY=inventories/prod)
	ansible-playbook site.yml -i $(or $(INVENTORY),inventories/prod) $(ARGS)

benchmark: venv ## Concurrency sweep against INVENTORY's load balancer or first node (docs/benchmarking.md)
	ansible-playbook playbooks/benchmark.yml -i $(or $(INVENTORY),inventories/prod) $(ARGS)

test: lint unit molecule ## The whole test suite (what CI runs)

lint: venv ## secret scan, the Python locks, yamllint, ansible-lint (production profile), syntax check
	python3 scripts/check_secrets.py
	scripts/locks.sh --check
	yamllint --strict .
	ansible-lint --profile production
	for playbook in $(PLAYBOOKS); do ansible-playbook --syntax-check -i inventories/sandbox $$playbook || exit 1; done

unit: venv ## pytest: plugins, stand-ins, rendered templates
	pytest --durations=15  # the slowest tests in the log: CI has a time budget

molecule: host venv ## Every molecule scenario, full sequence (the reliability table goes to reports/)
	for scenario in $(SCENARIOS); do \
	  molecule test -s $$scenario || exit 1; \
	  if [ $$scenario = reliability ]; then \
	    python3 scripts/reliability_report.py --output reports/reliability/reliability.md || exit 1; fi; \
	done

test-faults: ## Bad inputs, faults and secrets on a simulated node; rewrites docs/reliability.md
	$(MAKE) molecule SCENARIOS=reliability
	python3 scripts/reliability_report.py

host: ## Install the Debian packages the lab needs and start the Docker engine
	scripts/setup-dev-host.sh

venv: $(VENV)/.installed ## The Python virtualenv from the lock, requirements.txt (every hash checked)
$(VENV)/.installed: requirements.txt requirements.yml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --require-hashes -r requirements.txt
	$(VENV)/bin/ansible-galaxy collection install -r requirements.yml
	touch $@

lock: venv ## Rewrite the Python locks from their requirements.in files (ARGS=--upgrade moves every pin)
	scripts/locks.sh $(ARGS)

clean: sandbox-down ## Remove the sandbox and the virtualenv
	rm -rf $(VENV) .cache
