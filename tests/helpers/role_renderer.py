"""Evaluates role variables and templates with Ansible's own templar, without a host (unit tests, the simulated
balancer pair of lab/balancer_pair.py)."""

import pathlib

from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import filter_loader, init_plugin_loader
from ansible.template import Templar, trust_as_template

REPO = pathlib.Path(__file__).resolve().parents[2]
# As ansible-playbook does at start: plugins named by their full name (ansible.builtin.file) can then be found.
init_plugin_loader()
# The project's filters (ansible.cfg's filter_plugins), wherever pytest was started from.
filter_loader.add_directory(str(REPO / "plugins" / "filter"))


class RoleRenderer:
    """Loads a role's defaults and vars files the way a play would and templates with them."""

    def __init__(self, role: str, facts: dict, var_files=("main.yml",), overrides=None):
        self.role_dir = REPO / "roles" / role
        self.loader = DataLoader()
        variables = {"ansible_facts": facts, "ansible_managed": "Ansible managed", "inventory_hostname": "node1"}
        defaults = self.role_dir / "defaults" / "main.yml"
        if defaults.exists():
            variables.update(self.loader.load_from_file(str(defaults), trusted_as_template=True) or {})
        for name in var_files:
            variables.update(self.loader.load_from_file(str(self.role_dir / "vars" / name), trusted_as_template=True))
        variables.update(overrides or {})
        self.templar = Templar(loader=self.loader, variables=variables)

    def var(self, name: str):
        return self.templar.template(trust_as_template("{{ " + name + " }}"))

    def render(self, text: str, task_vars: dict | None = None):
        """Templates a string as a task's argument would be, with that task's `vars:` (both read from a tasks file,
        so trusted as templates)."""
        templar = self.templar
        if task_vars:
            trusted = {name: trust_as_template(value) if isinstance(value, str) else value
                       for name, value in task_vars.items()}
            templar = templar.copy_with_new_env(available_variables={**templar.available_variables, **trusted})
        return templar.template(trust_as_template(text))

    def template(self, name: str) -> str:
        source = (self.role_dir / "templates" / name).read_text()
        return self.templar.template(trust_as_template(source))
