"""An inventory host as other hosts see it: the addresses it can be reached at, and the roles' defaults beneath its
variables.

A play that reads another host's variables (`hostvars[host]`) sees that host's inventory values and facts, never the
defaults of a role that runs elsewhere. This is the one place that knows how to fill that gap: `reachable_addresses`
is the order in which a host's addresses are tried (its default IPv4 address once its facts are gathered, then
`ansible_host`, then its inventory name), `role_default` reads a role's plain default from its defaults/main.yml,
so a consumer names the variable instead of restating its value. Used by plugins/filter/inventory.py and
plugins/filter/vllm_service.py (the endpoint a GPU node serves, docs/node-facts.md); controller side only (it
reads the roles directory), no module imports it.
"""

import functools
import pathlib

import yaml

ROLES_DIR = pathlib.Path(__file__).resolve().parents[2] / "roles"


def _get(mapping, *keys):
    """mapping[k1][k2]..., or None where a level is missing (hostvars raise on a missing key, dicts too)."""
    for key in keys:
        try:
            mapping = mapping[key]
        except (KeyError, TypeError, IndexError):
            return None
        if mapping is None:
            return None
    return mapping


def reachable_addresses(variables, name):
    """Every address a host is known by, in the order other hosts try them: its default IPv4 address (known once
    its facts are gathered), its ansible_host, else its inventory name. Empty values are left out, duplicates kept
    once."""
    candidates = [_get(variables, "ansible_facts", "default_ipv4", "address"),
                  _get(variables, "ansible_host") or name]
    addresses = []
    for candidate in candidates:
        if candidate and str(candidate) not in addresses:
            addresses.append(str(candidate))
    return addresses


def reachable_address(variables, name):
    """The first of reachable_addresses: where another host connects to this one."""
    addresses = reachable_addresses(variables, name)
    return addresses[0] if addresses else ""


@functools.lru_cache(maxsize=None)
def _defaults(role, roles_dir):
    path = pathlib.Path(roles_dir) / role / "defaults" / "main.yml"
    if not path.is_file():
        return {}
    return yaml.safe_load(path.read_text()) or {}


def owning_role(variable, roles_dir=ROLES_DIR):
    """The role whose defaults define the variable: the longest role name it starts with (loadbalancer_vip_x is
    loadbalancer_vip's, loadbalancer_x loadbalancer's)."""
    roles = sorted((path.name for path in pathlib.Path(roles_dir).iterdir()
                    if path.is_dir() and variable.startswith(path.name + "_")), key=len, reverse=True)
    for role in roles:
        if variable in _defaults(role, str(roles_dir)):
            return role
    return None


def role_default(variable, roles_dir=ROLES_DIR):
    """The value roles/<role>/defaults/main.yml gives the variable. Only plain values: a templated default
    depends on the context of the host the role runs on, which a reader on another host does not have."""
    role = owning_role(variable, roles_dir)
    if role is None:
        raise ValueError(f"no role under {roles_dir} defines {variable} in its defaults/main.yml")
    value = _defaults(role, str(roles_dir))[variable]
    if isinstance(value, str) and ("{{" in value or "{%" in value):
        raise ValueError(f"{variable}'s default in roles/{role}/defaults/main.yml is a template ({value!r}), "
                         "which only makes sense on a host the role runs on")
    return value
