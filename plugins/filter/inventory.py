"""Filter of playbooks/validate.yml: inventory variables that no role reads, because their names are misspelt.

Ansible ignores a variable no task reads, so `vllm_servce_port: 9000` silently leaves the port at its default.
`inventory_variable_problems` compares the names a host's inventory sets with the options every role declares in
its meta/argument_specs.yml, and returns one message per name that carries a role's prefix without being one of
its options, or that is one typo away from an option.
"""

import difflib

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


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self):
        return {"inventory_variable_problems": inventory_variable_problems}
