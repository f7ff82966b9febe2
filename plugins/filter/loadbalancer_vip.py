"""Filters of the loadbalancer_vip role: what is wrong with its settings, before keepalived is installed.

`loadbalancer_vip_problems` checks what needs no host fact (tasks/validate.yml, also run by playbooks/validate.yml
on the controller); `loadbalancer_vip_host_problems` checks the address against the host's network
(tasks/preflight.yml). Each returns one message per broken rule, naming the variable and the fix, and nothing
when loadbalancer_vip_address is empty (the role is off).
"""

import ipaddress

DOCUMENTATION = r"""
name: loadbalancer_vip_problems
short_description: Configuration problems of the loadbalancer_vip role
description:
  - C(loadbalancer_vip_problems) checks the settings that need no host fact; C(loadbalancer_vip_host_problems)
    checks the virtual IP against the host's facts (C(facts)) and the other balancers' facts.
  - Both return a list of messages, empty when the configuration is valid or the role is off.
positional: _input
options:
  _input:
    description:
      - The role's settings as its vars/main.yml gathers them (C(_loadbalancer_vip_settings)).
    type: dict
    required: true
"""

# VRRPv3 carries the advert interval in centiseconds, in 12 bits (RFC 5798, 5.2.7).
ADVERT_INTERVAL_RANGE = (0.01, 40.95)


def _ipv4(value):
    """The IPv4 address a value names, or None (names, networks and IPv6 addresses are not one)."""
    try:
        address = ipaddress.ip_address(str(value).strip())
    except ValueError:
        return None
    return address if address.version == 4 else None


def _address_problem(text):
    """Why loadbalancer_vip_address cannot be a virtual IP, or None."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        if "/" in text and _ipv4(text.split("/", 1)[0]):
            return (f"loadbalancer_vip_address: {text!r} has a prefix length: give the address alone "
                    f"({text.split('/', 1)[0]}); the prefix comes from the interface that carries it.")
        return (f"loadbalancer_vip_address: {text!r} is not an IPv4 address: set it to a free address in the "
                "balancers' subnet (like 10.20.0.100), or empty to run without a virtual IP.")
    if address.version != 4:
        return f"loadbalancer_vip_address: {text!r} is an IPv6 address; this role moves an IPv4 address only."
    if address.is_loopback or address.is_multicast or address.is_unspecified or address.is_link_local \
            or address.is_reserved:
        return (f"loadbalancer_vip_address: {text} is not an address clients can reach on a network (loopback, "
                "multicast, link-local or reserved): choose a free address in the balancers' subnet.")
    return None


def _number(value, kind=int):
    """value as an int (or float), or None when it is not one (booleans are not numbers)."""
    if isinstance(value, bool):
        return None
    try:
        return kind(str(value).strip())
    except ValueError:
        return None


def _range_problems(settings):
    problems = []
    router_id = _number(settings.get("router_id"))
    if router_id is None or not 1 <= router_id <= 255:
        problems.append(
            f"loadbalancer_vip_router_id is {settings.get('router_id')!r}: a VRRP virtual router id is a number "
            "from 1 to 255. Pick one that no other VRRP router on the balancers' LAN uses (other keepalived "
            "pairs, routers, firewalls).")
    interval = _number(settings.get("advert_interval"), float)
    low, high = ADVERT_INTERVAL_RANGE
    if interval is None or not low <= interval <= high:
        problems.append(
            f"loadbalancer_vip_advert_interval is {settings.get('advert_interval')!r}: VRRPv3 sends adverts every "
            f"{low} to {high} s. Set a number of seconds in that range (at 0.5 a dead holder is replaced within "
            "1.8 s).")
    for name in ("check_fall", "check_rise"):
        count = _number(settings.get(name))
        if count is None or count < 1:
            problems.append(f"loadbalancer_vip_{name} is {settings.get(name)!r}: set a whole number of checks, at "
                            "least 1.")
    return problems


def _balancer_problems(settings, address):
    problems = []
    group = settings.get("group")
    balancers = settings.get("balancers") or []
    names = [balancer["name"] for balancer in balancers]
    if len(balancers) < 2:
        problems.append(
            f"loadbalancer_vip_address is set but the group {group!r} (loadbalancer_vip_group) has "
            f"{len(balancers)} host(s){' (' + ', '.join(names) + ')' if names else ''}: the address can only fail "
            "over to a second balancer. Add a second balancer to the group, or leave loadbalancer_vip_address "
            "empty and let clients use the balancer's own address.")
    if settings.get("host") not in names:
        problems.append(
            f"{settings.get('host')} would share the virtual IP but is not in the group {group!r} "
            "(loadbalancer_vip_group), so the other balancers do not count it: add it to that group, or set "
            "loadbalancer_vip_group to the group of the balancers.")
    priorities = {}
    for balancer in balancers:
        priority = _number(balancer.get("priority"))
        if priority is None or not 1 <= priority <= 254:
            problems.append(
                f"loadbalancer_vip_priority of {balancer['name']} is {balancer.get('priority')!r}: set a number "
                "from 1 to 254 (255 is reserved for a router that owns the address).")
        else:
            priorities.setdefault(priority, []).append(balancer["name"])
    for priority, holders in priorities.items():
        if len(holders) > 1:
            problems.append(
                f"loadbalancer_vip_priority is {priority} on {', '.join(holders)}: each balancer needs its own "
                "priority (the highest healthy one holds the address). Set a different loadbalancer_vip_priority "
                "in their host_vars, or leave it unset (100 for the group's first host, 99 for the second, ...).")
    for host in settings.get("inventory_hosts") or []:
        if _ipv4(host.get("ansible_host")) == address:
            problems.append(
                f"loadbalancer_vip_address {address} is the address of {host['name']} (its ansible_host): the "
                "virtual IP must be free. Choose an address in the balancers' subnet that no host uses.")
    return problems


def _unicast_problems(settings, address):
    peers = settings.get("unicast_peers") or []
    problems = [f"loadbalancer_vip_unicast_peers: {peer!r} is not an IPv4 address: list each balancer's address on "
                "loadbalancer_vip_interface." for peer in peers if _ipv4(peer) is None]
    if address in {_ipv4(peer) for peer in peers}:
        problems.append(f"loadbalancer_vip_unicast_peers lists the virtual IP {address}: list the balancers' own "
                        "addresses instead.")
    balancers = settings.get("balancers") or []
    if peers and len(peers) < len(balancers):
        problems.append(
            f"loadbalancer_vip_unicast_peers lists {len(peers)} address(es) for {len(balancers)} balancers: list "
            "every balancer's address on loadbalancer_vip_interface (each host leaves out its own), or empty the "
            "list for multicast.")
    return problems


def _listen_problem(settings, address):
    listen = str(settings.get("listen_address") or "").strip()
    if listen in (str(address), "0.0.0.0"):
        return None
    current = f"is {listen}" if listen else "is not set (HAProxy listens on the host's own address)"
    return (f"loadbalancer_listen_address {current}, but clients connect to loadbalancer_vip_address {address}: "
            "HAProxy would not answer there. Set loadbalancer_listen_address: \"{{ loadbalancer_vip_address }}\" "
            "for the balancers' group (inventories/prod/hosts.yml shows how).")


def loadbalancer_vip_problems(settings):
    """Every broken rule of the settings that needs no host fact; empty when the role is off."""
    text = str(settings.get("address") or "").strip()
    if not text:
        return []
    problem = _address_problem(text)
    if problem:
        return [problem] + _range_problems(settings)
    address = ipaddress.ip_address(text)
    problems = _range_problems(settings) + _balancer_problems(settings, address)
    problems += _unicast_problems(settings, address)
    listen = _listen_problem(settings, address)
    return problems + ([listen] if listen else [])


def _facts_key(interface):
    """The key of an interface in ansible_facts (the setup module writes - and : as _)."""
    return interface.replace("-", "_").replace(":", "_")


def _interface_network(facts, interface):
    """The IPv4 network and address of an interface from the host's facts, or (None, None)."""
    ipv4 = (facts.get(_facts_key(interface)) or {}).get("ipv4") or {}
    if not ipv4.get("address") or not ipv4.get("prefix"):
        return None, None
    network = ipaddress.ip_network(f"{ipv4['address']}/{ipv4['prefix']}", strict=False)
    return network, ipaddress.ip_address(ipv4["address"])


def _own_addresses(facts):
    """The primary IPv4 address of each of the host's interfaces, by interface (a secondary one may be the virtual
    IP itself, added by keepalived on the balancer that holds it)."""
    owned = {}
    for interface in facts.get("interfaces") or []:
        address = _ipv4(((facts.get(_facts_key(interface)) or {}).get("ipv4") or {}).get("address"))
        if address:
            owned[address] = interface
    return owned


def loadbalancer_vip_host_problems(settings):
    """Every broken rule of the virtual IP on this host (settings plus `facts`, this host's ansible_facts)."""
    text = str(settings.get("address") or "").strip()
    address = _ipv4(text)
    if address is None:
        return []  # off, or refused by loadbalancer_vip_problems already
    facts, host, interface = settings.get("facts") or {}, settings.get("host"), settings.get("interface") or ""
    if not interface:
        return [f"{host} has no default IPv4 route, so loadbalancer_vip_interface has no default: set it to the "
                "interface on the clients' network."]
    if interface not in (facts.get("interfaces") or []) and _facts_key(interface) not in facts:
        known = ", ".join(sorted(facts.get("interfaces") or [])) or "none"
        return [f"loadbalancer_vip_interface {interface!r} is not an interface of {host} (it has {known}): set it "
                "to the interface on the clients' network."]
    network, own = _interface_network(facts, interface)
    if network is None:
        return [f"loadbalancer_vip_interface {interface} of {host} has no IPv4 address: keepalived needs the "
                "balancer's own address on that interface to send its adverts. Configure one, or set "
                "loadbalancer_vip_interface to the interface on the clients' network."]
    problems = []
    if address not in network:
        problems.append(
            f"loadbalancer_vip_address {address} is outside {host}'s subnet on {interface} ({network}): VRRP moves "
            f"an address within one network. Choose a free address in {network}, or set loadbalancer_vip_interface "
            "to the interface on the virtual IP's network.")
    owner = _own_addresses(facts).get(address)
    if owner:
        problems.append(
            f"loadbalancer_vip_address {address} is {host}'s own address (on {owner}): the virtual IP must be "
            f"free. Choose an address in {network} that no host uses.")
    for balancer in settings.get("balancers") or []:
        if balancer["name"] != host and _ipv4(balancer.get("default_address")) == address:
            problems.append(
                f"loadbalancer_vip_address {address} is the address of {balancer['name']} (from its facts): the "
                f"virtual IP must be free. Choose an address in {network} that no host uses.")
    peers = [_ipv4(peer) for peer in settings.get("unicast_peers") or []]
    if peers:
        if own not in peers:
            problems.append(
                f"loadbalancer_vip_unicast_peers does not list {host}'s address on {interface} ({own}): list every "
                "balancer's address on loadbalancer_vip_interface.")
        outside = [str(peer) for peer in peers if peer and peer not in network]
        if outside:
            problems.append(
                f"loadbalancer_vip_unicast_peers: {', '.join(outside)} outside {host}'s subnet on {interface} "
                f"({network}): the balancers share the virtual IP's network; list their addresses in it.")
    return problems


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self):
        return {"loadbalancer_vip_problems": loadbalancer_vip_problems,
                "loadbalancer_vip_host_problems": loadbalancer_vip_host_problems}
