"""Lookup plugin: every role's argument spec, read on the controller, for the checks of playbooks/validate.yml."""

import pathlib

import yaml
from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

DOCUMENTATION = r"""
name: role_argument_specs
short_description: The options of every role's main entry point, from its meta/argument_specs.yml
description:
  - Reads C(<roles_dir>/*/meta/argument_specs.yml) on the controller and returns one dict mapping each role's
    name to the options of its C(main) entry point (name to option spec), so that a play can check the
    inventory's values against all roles before it contacts any host.
options:
  _terms:
    description: The roles directory.
    type: path
    required: true
"""

EXAMPLES = r"""
- name: Check every role's inventory values
  ansible.builtin.validate_argument_spec:
    argument_spec: "{{ item.value }}"
  loop: "{{ lookup('role_argument_specs', playbook_dir ~ '/roles') | dict2items }}"
"""

RETURN = r"""
_raw:
  description: One dict, role name to that role's C(main) options (each an argument spec option).
  type: list
  elements: dict
"""


class LookupModule(LookupBase):
    """Reads the argument specs of every role under a roles directory."""

    def run(self, terms, variables=None, **kwargs):
        if len(terms) != 1:
            raise AnsibleLookupError("role_argument_specs takes one term: the roles directory")
        roles_dir = pathlib.Path(str(terms[0]))
        if not roles_dir.is_dir():
            raise AnsibleLookupError(f"role_argument_specs: {roles_dir} is not a directory")
        specs = {}
        for path in sorted(roles_dir.glob("*/meta/argument_specs.yml")):
            document = yaml.safe_load(path.read_text()) or {}
            options = document.get("argument_specs", {}).get("main", {}).get("options") or {}
            specs[path.parent.parent.name] = options
        return [specs]
