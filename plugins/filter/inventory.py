"""Filters of an inventory's hosts and variables.

Ansible ignores a variable no task reads, so `vllm_servce_port: 9000` silently leaves the port at its default.
`inventory_variable_problems` (playbooks/validate.yml) compares the names a host's inventory sets with the options
every role declares in its meta/argument_specs.yml, and returns one message per name that carries a role's prefix
without being one of its options, or that is one typo away from an option.

`inventory_host_address` and `inventory_host_addresses` are where other hosts reach a host (its default IPv4
address once its facts are gathered, else its ansible_host, else its name), and `role_default` is a role's plain
default for a variable, read from the role, for plays that read another host's variables, where the defaults of a
role that runs there are not in scope (module_utils/inventory_hosts.py holds both).
"""

import difflib
import os

import ansible.module_utils

# The project's module_utils under the name its modules import them by (plugins/README.md, "module_utils").
_MODULE_UTILS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "module_utils")
if _MODULE_UTILS not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(_MODULE_UTILS)
from ansible.module_utils import inventory_hosts  # noqa: E402  pylint: disable=wrong-import-position

DOCUMENTATION = r"""
name: inventory_variable_problems
short_description: Misspelt role variables among the names an inventory sets
description:
  - Returns one message per variable name that starts with a role's prefix (the role name and an underscore)
    but is not one of that role's options, or that closely resembles a role option without being one.
  - Names that resemble nothing are the inventory's own business (connection settings, site-specific values) and
    are left alone, as are vault variables (C(vault_) and the name of the role variable they feed).
positional: _input, role_options
options:
  _input:
    description: The variable names set for a host (for example C(hostvars[inventory_hostname].keys())).
    type: list
    elements: str
    required: true
  role_options:
    description: >-
      Each role's name mapped to its options (the option names, or the C(main) entry point's options dict of its
      argument spec, as the role_argument_specs lookup returns them).
    type: dict
    required: true
"""

# How alike a name and an option must be (difflib's ratio) to call the name a typo of the option.
TYPO_SIMILARITY = 0.88


def _owning_role(name, role_options):
    """The role whose prefix the name carries (the longest, so that docker_x is not taken for a role docker_y)."""
    roles = [role for role in role_options if name.startswith(role + "_")]
    return max(roles, key=len) if roles else None


def inventory_variable_problems(names, role_options):
    """One message per inventory variable that looks meant for a role but is not one of its options."""
    role_options = {role: list(role_option_names) for role, role_option_names in role_options.items()}
    options = {option: role for role, role_option_names in role_options.items() for option in role_option_names}
    problems = []
    for name in sorted(set(names)):
        # vault_<name>: Ansible's convention for the vault side of a value the inventory maps to a role's variable.
        if name in options or name.startswith(("ansible_", "_", "vault_")):
            continue
        role = _owning_role(name, role_options)
        candidates = role_options[role] if role else list(options)
        close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.0 if role else TYPO_SIMILARITY)
        if role:
            hint = f" Did you mean {close[0]}?" if close else ""
            problems.append(
                f"{name} is set in the inventory but role {role} has no such variable, so it would be ignored."
                f"{hint} The role's variables are listed in roles/{role}/README.md."
            )
        elif close:
            problems.append(
                f"{name} is set in the inventory but no role reads it, so it would be ignored. Did you mean "
                f"{close[0]} (role {options[close[0]]}, roles/{options[close[0]]}/README.md)?"
            )
    return problems


def inventory_host_address(variables, name):
    """Where other hosts reach an inventory host: `hostvars[host] | inventory_host_address(host)`."""
    return inventory_hosts.reachable_address(variables, name)


def inventory_host_addresses(variables, name):
    """Every address an inventory host is known by, the one other hosts try first first."""
    return inventory_hosts.reachable_addresses(variables, name)


def role_default(variable):
    """The plain default roles/<role>/defaults/main.yml gives a variable: `'loadbalancer_port' | role_default`."""
    return inventory_hosts.role_default(str(variable))


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self):
        return {"inventory_variable_problems": inventory_variable_problems,
                "inventory_host_address": inventory_host_address,
                "inventory_host_addresses": inventory_host_addresses,
                "role_default": role_default}
