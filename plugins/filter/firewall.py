"""Filter of the firewall role: the sources allowed to reach a GPU node's guarded ports, and what is wrong with the
settings.

`firewall_plan` turns the allowed hosts and networks into the IPv4 networks the rules use (deduplicated, in a
stable order), the guarded ports, and one message per broken rule, each naming the variable and the fix, so the
role can refuse a configuration before it changes a node.
"""

import ipaddress
import re

DOCUMENTATION = r"""
name: firewall_plan
short_description: Sources, ports and configuration problems of the firewall role
description:
  - Computes what the firewall role's rules allow and checks the role's variables (see the role's vars/main.yml
    and README).
  - Returns a dict with C(sources) (a list of C(cidr), C(comment)), C(ports) (the guarded TCP ports) and
    C(problems) (messages, empty when the configuration is valid).
positional: _input
options:
  _input:
    description:
      - C(hosts) (a list of C(name), C(group), C(addresses) of the allowed inventory hosts), C(networks)
        (firewall_allowed_networks), C(port) (firewall_port), C(extra_ports) (firewall_extra_ports),
        C(ssh_port) (the port Ansible connects to), C(loadbalancer_group) and C(monitoring_group).
    type: dict
    required: true
"""

# What an iptables comment may hold here: no spaces or quotes, so that a rule is one word per argument.
UNSAFE_COMMENT_CHARACTERS = re.compile(r"[^A-Za-z0-9._:@-]")


def _comment(text: str) -> str:
    return UNSAFE_COMMENT_CHARACTERS.sub("_", text)[:200]


def _allowed_network(entry):
    """The IPv4 network an entry of firewall_allowed_networks names, or the message saying why it is refused."""
    text = str(entry).strip()
    try:
        network = ipaddress.ip_network(text, strict=True)
    except ValueError:
        try:
            loose = ipaddress.ip_network(text, strict=False)
        except ValueError:
            return None, (f"firewall_allowed_networks: {text!r} is not an IPv4 network in CIDR notation "
                          "(like 10.20.0.0/24, or 10.20.0.7 for one address).")
        if loose.version == 4:
            return None, (f"firewall_allowed_networks: {text!r} has host bits set: write {loose} for the network or "
                          f"{text.split('/')[0]}/32 for one address.")
        network = loose
    if network.version != 4:
        return None, (f"firewall_allowed_networks: {text!r} is an IPv6 network; this role filters IPv4 only (the "
                      "vLLM port is published on an IPv4 address). Remove it.")
    if network.prefixlen == 0:
        return None, (f"firewall_allowed_networks: {text!r} allows every address, which guards nothing: list the "
                      "client networks, or set firewall_enabled to false.")
    return network, None


def _ipv4_addresses(addresses):
    """The IPv4 addresses among a host's known addresses (names are left out: a rule needs an address)."""
    found = []
    for address in addresses:
        try:
            parsed = ipaddress.ip_address(str(address))
        except ValueError:
            continue
        if parsed.version == 4:
            found.append(parsed)
    return found


def _port_problems(config, ssh_port):
    ports, problems = [], []
    named = [("firewall_port", config.get("port"))]
    named += [("firewall_extra_ports", port) for port in config.get("extra_ports") or []]
    for variable, value in named:
        if isinstance(value, bool) or not str(value).strip().isdigit():
            problems.append(f"{variable}: {value!r} is not a port number (a whole number from 1 to 65535).")
            continue
        port = int(value)
        if not 1 <= port <= 65535:
            problems.append(f"{variable}: {port} is not a port number (from 1 to 65535).")
        elif port == ssh_port:
            problems.append(
                f"{variable} is {port}, the port Ansible connects to (ansible_port): guarding it could lock Ansible "
                "and you out of the node. This role never filters SSH; remove it."
            )
        elif port not in ports:
            ports.append(port)
    return ports, problems


def firewall_plan(config):
    """The sources and ports of the firewall role's rules, and every broken rule of its configuration."""
    sources, problems = [], []
    group_variables = {config.get("loadbalancer_group"): "firewall_loadbalancer_group",
                       config.get("monitoring_group"): "firewall_monitoring_group"}

    def add(network, comment):
        if all(source["cidr"] != str(network) for source in sources):
            sources.append({"cidr": str(network), "comment": _comment(comment)})

    hosts = config.get("hosts") or []
    for host in hosts:
        addresses = _ipv4_addresses(host.get("addresses") or [])
        if not addresses:
            known = ", ".join(repr(str(address)) for address in host.get("addresses") or []) or "nothing"
            problems.append(
                f"{host['name']} (group {host['group']!r}, {group_variables.get(host['group'], 'an allowed group')}) "
                f"has no known IPv4 address (known: {known}): its facts were not gathered and its ansible_host is "
                "not an IPv4 address. Run playbooks/firewall.yml, which gathers them, or set its ansible_host to its "
                "address."
            )
        for address in addresses:
            add(ipaddress.ip_network(address), f"{host['group']}:{host['name']}")

    networks = config.get("networks") or []
    for entry in networks:
        network, problem = _allowed_network(entry)
        if problem:
            problems.append(problem)
        else:
            add(network, "firewall_allowed_networks")

    ssh_port = config.get("ssh_port")
    ports, port_problems = _port_problems(config, int(ssh_port) if str(ssh_port).isdigit() else 22)
    problems.extend(port_problems)

    if not hosts and not networks:
        named = [f"the group {group!r} ({variable})" for group, variable in group_variables.items() if group]
        reason = (f"{' and '.join(named)} {'has' if len(named) == 1 else 'have'} no hosts in the inventory and "
                  "firewall_allowed_networks is empty" if named else
                  "firewall_loadbalancer_group, firewall_monitoring_group and firewall_allowed_networks are empty")
        problems.append(
            f"firewall_enabled is true but no source would be allowed to reach port(s) "
            f"{', '.join(map(str, ports)) or config.get('port')}: {reason}, so every client would be cut off. Add "
            "the load balancers to the group firewall_loadbalancer_group names, or list the client networks in "
            "firewall_allowed_networks."
        )
    return {"sources": sources, "ports": ports, "problems": problems}


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self):
        return {"firewall_plan": firewall_plan}
