"""The firewall role: the rules its script holds for an inventory (load balancers, monitoring hosts, networks), what
its checks refuse, that the script and the unit are valid, and, run for real inside throwaway network namespaces
(never the host's own firewall), that the script is idempotent, repairs drift and removes itself, and that with
Docker 20.10's rules for a published port rebuilt around it the allowed sources connect while every other source
gets a TCP reset, on the published port, on a host service's port and on docker-proxy's path.

Run as a script, this file is the namespaces' TCP listener (`listen`) and connection prober (`probe`).
"""

import argparse
import itertools
import json
import os
import pathlib
import shlex
import shutil
import socket
import subprocess
import sys
import threading

import pytest
import yaml

REPO = pathlib.Path(__file__).resolve().parents[3]
LB_ONLY = {
    "groups": {"loadbalancers": ["lb01", "lb02"]},
    "hostvars": {
        # Facts gathered: its default IPv4 address and the address Ansible reaches it on.
        "lb01": {"ansible_host": "10.20.0.5", "ansible_facts": {"default_ipv4": {"address": "10.30.0.5"}}},
        # No facts: how Ansible reaches it.
        "lb02": {"ansible_host": "10.20.0.6"},
    },
}
REFUSE = "-p tcp -j REJECT --reject-with tcp-reset"


def _renderer(role_renderer, inventory=None, **overrides):
    from ansible.plugins.loader import filter_loader

    # The role's filter, found without relying on the working directory's ansible.cfg.
    filter_loader.add_directory(str(REPO / "plugins" / "filter"))
    inventory = LB_ONLY if inventory is None else inventory
    return role_renderer("firewall", {"default_ipv4": {"address": "10.20.0.11"}},
                         overrides={**inventory, "firewall_enabled": True, **overrides})


def _array(script: str, name: str) -> list[str]:
    """The elements of one of the script's `readonly -a NAME=( ... )` arrays."""
    block = script.split(f"readonly -a {name}=(\n", 1)[1].split("\n)\n", 1)[0]
    return [shlex.split(line)[0] for line in block.splitlines()]


def test_load_balancers_only(role_renderer):
    script = _renderer(role_renderer).template("vllm-firewall.j2")
    assert _array(script, "ALLOW_RULES") == [
        "-i lo -j RETURN",
        "-s 10.30.0.5/32 -m comment --comment loadbalancers:lb01 -j RETURN",
        "-s 10.20.0.5/32 -m comment --comment loadbalancers:lb01 -j RETURN",
        "-s 10.20.0.6/32 -m comment --comment loadbalancers:lb02 -j RETURN",
        REFUSE,
    ]
    assert _array(script, "INPUT_RULES") == ["-p tcp -m tcp --dport 8000 -j VLLM-ALLOW"]
    assert _array(script, "FORWARD_RULES") == [
        "-p tcp -m conntrack --ctstate DNAT --ctorigdstport 8000 --ctdir ORIGINAL -j VLLM-ALLOW"]


def test_load_balancers_monitoring_networks_and_extra_ports(role_renderer):
    inventory = {"groups": {**LB_ONLY["groups"], "monitoring": ["mon01", "lb02"]},
                 "hostvars": {**LB_ONLY["hostvars"], "mon01": {"ansible_host": "mon01.example.net",
                                                               "ansible_facts": {"default_ipv4": {
                                                                   "address": "10.20.0.7"}}}}}
    renderer = _renderer(role_renderer, inventory, vllm_service_port=9000,
                         firewall_allowed_networks=["10.40.0.0/24", "192.0.2.7", "10.40.0.0/24"],
                         firewall_extra_ports=[9100, 9000])
    script = renderer.template("vllm-firewall.j2")
    assert _array(script, "ALLOW_RULES") == [
        "-i lo -j RETURN",
        "-s 10.30.0.5/32 -m comment --comment loadbalancers:lb01 -j RETURN",
        "-s 10.20.0.5/32 -m comment --comment loadbalancers:lb01 -j RETURN",
        "-s 10.20.0.6/32 -m comment --comment loadbalancers:lb02 -j RETURN",
        # mon01's name is not an address; lb02, in both groups, is listed once.
        "-s 10.20.0.7/32 -m comment --comment monitoring:mon01 -j RETURN",
        "-s 10.40.0.0/24 -m comment --comment firewall_allowed_networks -j RETURN",
        "-s 192.0.2.7/32 -m comment --comment firewall_allowed_networks -j RETURN",
        REFUSE,
    ]
    # firewall_port follows vllm_service_port; a port listed twice is guarded once.
    assert _array(script, "INPUT_RULES") == ["-p tcp -m tcp --dport 9000 -j VLLM-ALLOW",
                                             "-p tcp -m tcp --dport 9100 -j VLLM-ALLOW"]
    assert _array(script, "FORWARD_RULES") == [
        f"-p tcp -m conntrack --ctstate DNAT --ctorigdstport {port} --ctdir ORIGINAL -j VLLM-ALLOW"
        for port in (9000, 9100)]
    assert "ExecStart=/bin/bash /usr/local/sbin/vllm-firewall apply" in renderer.template(
        "vllm-firewall.service.j2").splitlines()


def _problems(renderer) -> list[str]:
    """The messages of the role's tasks/validate.yml assert, which passes only when there is none."""
    task = yaml.safe_load((renderer.role_dir / "tasks" / "validate.yml").read_text())[0]["ansible.builtin.assert"]
    passes = renderer.render("{{ " + task["that"] + " }}")
    problems = renderer.render(task["fail_msg"])
    assert passes == (problems == [])
    return problems


def test_a_valid_configuration_passes(role_renderer):
    assert _problems(_renderer(role_renderer, firewall_allowed_networks=["10.40.0.0/24"])) == []


def test_no_allowed_source_is_refused(role_renderer):
    (problem,) = _problems(_renderer(role_renderer, {"groups": {"gpu_nodes": ["node1"]}, "hostvars": {}}))
    for words in ("firewall_enabled is true", "'loadbalancers' (firewall_loadbalancer_group)",
                  "'monitoring' (firewall_monitoring_group)", "firewall_allowed_networks is empty", "cut off"):
        assert words in problem


@pytest.mark.parametrize(("networks", "expected"), [
    (["10.40.0.0/33"], "'10.40.0.0/33' is not an IPv4 network in CIDR notation"),
    (["clients"], "'clients' is not an IPv4 network"),
    (["10.40.0.5/24"], "has host bits set: write 10.40.0.0/24 for the network or 10.40.0.5/32 for one address"),
    (["2001:db8::/32"], "is an IPv6 network; this role filters IPv4 only"),
    (["0.0.0.0/0"], "allows every address"),
], ids=["prefix-too-long", "name", "host-bits", "ipv6", "everyone"])
def test_invalid_networks_are_refused(role_renderer, networks, expected):
    (problem,) = _problems(_renderer(role_renderer, firewall_allowed_networks=networks))
    assert problem.startswith("firewall_allowed_networks: ") and expected in problem


def test_a_host_without_an_address_is_refused(role_renderer):
    inventory = {"groups": {"loadbalancers": ["lb01", "lb03"]},
                 "hostvars": {"lb01": {"ansible_host": "10.20.0.5"}, "lb03": {}}}
    (problem,) = _problems(_renderer(role_renderer, inventory))
    assert problem.startswith("lb03 (group 'loadbalancers', firewall_loadbalancer_group) has no known IPv4 address")
    assert "playbooks/firewall.yml" in problem


@pytest.mark.parametrize(("overrides", "expected"), [
    ({"firewall_extra_ports": [22]}, "firewall_extra_ports is 22, the port Ansible connects to"),
    ({"firewall_port": 2222, "ansible_port": 2222}, "firewall_port is 2222, the port Ansible connects to"),
    ({"firewall_extra_ports": [70000]}, "firewall_extra_ports: 70000 is not a port number"),
    ({"firewall_port": "http"}, "firewall_port: 'http' is not a port number"),
], ids=["ssh", "ssh-elsewhere", "out-of-range", "not-a-number"])
def test_invalid_ports_are_refused(role_renderer, overrides, expected):
    (problem,) = _problems(_renderer(role_renderer, **overrides))
    assert expected in problem


def test_script_is_valid_bash(role_renderer, tmp_path):
    """What the role's `validate: bash -n %s` runs."""
    script = tmp_path / "vllm-firewall"
    script.write_text(_renderer(role_renderer, firewall_extra_ports=[9100]).template("vllm-firewall.j2"))
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_unit_is_valid(role_renderer, tmp_path):
    """What the role's `validate: systemd-analyze verify %s` runs (it needs the script where ExecStart points)."""
    script = tmp_path / "vllm-firewall"
    script.write_text("")
    unit = tmp_path / "vllm-firewall.service"
    unit.write_text(_renderer(role_renderer, _firewall_script_path=str(script)).template("vllm-firewall.service.j2"))
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "vllm-firewall" not in result.stderr, result.stderr
    assert {"After=docker.service", "PartOf=docker.service", "Type=oneshot", "RemainAfterExit=yes",
            "WantedBy=multi-user.target docker.service"} <= set(unit.read_text().splitlines())


# --- the script run for real, in network namespaces ----------------------------------------------------------

def _netns_unavailable() -> str:
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    missing = [tool for tool in ("ip", "iptables", "iptables-restore") if shutil.which(tool) is None]
    return f"needs {', '.join(missing)}" if missing else ""


needs_netns = pytest.mark.skipif(bool(_netns_unavailable()), reason=_netns_unavailable() or "-")
# Docker 20.10's rules (Debian 12's docker.io) for `docker run --publish 10.99.0.1:9000:8000` of a container at
# 172.17.0.2 on docker0: the DNAT of the published port in nat PREROUTING (and OUTPUT, for the node itself), the
# FORWARD chain that jumps to DOCKER-USER first, and the FORWARD policy DROP Docker sets when it turns on
# forwarding. From moby's integration/network/bridge/iptablesdoc (usernet-portmap-hostip.md), for docker0.
DOCKER_RULES = """\
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
-A POSTROUTING -s 172.17.0.2/32 -d 172.17.0.2/32 -p tcp -m tcp --dport 8000 -j MASQUERADE
-A DOCKER -i docker0 -j RETURN
-A DOCKER -d 10.99.0.1/32 ! -i docker0 -p tcp -m tcp --dport 9000 -j DNAT --to-destination 172.17.0.2:8000
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER - [0:0]
:DOCKER-ISOLATION-STAGE-1 - [0:0]
:DOCKER-ISOLATION-STAGE-2 - [0:0]
:DOCKER-USER - [0:0]
-A FORWARD -j DOCKER-USER
-A FORWARD -j DOCKER-ISOLATION-STAGE-1
-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -o docker0 -j DOCKER
-A FORWARD -i docker0 ! -o docker0 -j ACCEPT
-A FORWARD -i docker0 -o docker0 -j ACCEPT
-A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 8000 -j ACCEPT
-A DOCKER-ISOLATION-STAGE-1 -i docker0 ! -o docker0 -j DOCKER-ISOLATION-STAGE-2
-A DOCKER-ISOLATION-STAGE-1 -j RETURN
-A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP
-A DOCKER-ISOLATION-STAGE-2 -j RETURN
-A DOCKER-USER -j RETURN
COMMIT
"""
# What the script adds for the namespace test's inventory: lb01 at 10.99.0.10, the network 10.99.1.0/24, the vLLM
# port 9000 and the node exporter's 9100.
LIVE_INVENTORY = {"groups": {"loadbalancers": ["lb01"]}, "hostvars": {"lb01": {"ansible_host": "10.99.0.10"}}}
LIVE_SETTINGS = {"vllm_service_port": 9000, "firewall_extra_ports": [9100],
                 "firewall_allowed_networks": ["10.99.1.0/24"]}
ADDED_RULES = {
    "-N VLLM-ALLOW", "-N VLLM-INPUT", "-N VLLM-FORWARD",
    "-A INPUT -j VLLM-INPUT",
    "-A DOCKER-USER -j VLLM-FORWARD",
    "-A VLLM-ALLOW -i lo -j RETURN",
    '-A VLLM-ALLOW -s 10.99.0.10/32 -m comment --comment "loadbalancers:lb01" -j RETURN',
    "-A VLLM-ALLOW -s 10.99.1.0/24 -m comment --comment firewall_allowed_networks -j RETURN",
    "-A VLLM-ALLOW -p tcp -j REJECT --reject-with tcp-reset",
    "-A VLLM-INPUT -p tcp -m tcp --dport 9000 -j VLLM-ALLOW",
    "-A VLLM-INPUT -p tcp -m tcp --dport 9100 -j VLLM-ALLOW",
    "-A VLLM-FORWARD -p tcp -m conntrack --ctstate DNAT --ctorigdstport 9000 --ctdir ORIGINAL -j VLLM-ALLOW",
    "-A VLLM-FORWARD -p tcp -m conntrack --ctstate DNAT --ctorigdstport 9100 --ctdir ORIGINAL -j VLLM-ALLOW",
}
_names = itertools.count()


class Namespaces:
    """Named network namespaces for one test, deleted (with the processes started in them) afterwards."""

    def __init__(self):
        self.names, self.processes = [], []

    def add(self, role: str) -> str:
        name = f"vfw{os.getpid()}-{next(_names)}-{role}"
        subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True, timeout=10)
        self.names.append(name)
        self.run(name, "ip", "link", "set", "lo", "up")
        return name

    @staticmethod
    def run(name: str, *command: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(["ip", "netns", "exec", name, *command], input=stdin, capture_output=True,
                                text=True, timeout=30)
        if check:
            assert result.returncode == 0, f"{' '.join(command)}: {result.stderr}"
        return result

    def start(self, name: str, *arguments: str):
        """This file run as a script in the namespace; returns once it printed READY."""
        process = subprocess.Popen(["ip", "netns", "exec", name, sys.executable, __file__, *arguments],
                                   stdout=subprocess.PIPE, text=True)
        self.processes.append(process)
        ready = []
        reader = threading.Thread(target=lambda: ready.append(process.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout=15)
        assert ready and ready[0].startswith("READY"), f"{arguments} did not start in {name}"

    def close(self):
        for process in self.processes:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        for name in self.names:
            subprocess.run(["ip", "netns", "delete", name], capture_output=True, timeout=10)


@pytest.fixture
def namespaces():
    created = Namespaces()
    try:
        yield created
    finally:
        created.close()


class Node:
    """A node's network namespace with the rendered script: apply/check/remove and its iptables rules."""

    def __init__(self, namespaces: Namespaces, name: str, script: pathlib.Path):
        self.namespaces, self.name, self.script = namespaces, name, script

    def firewall(self, action: str) -> int:
        result = self.namespaces.run(self.name, "bash", str(self.script), action, check=False)
        assert result.returncode in (0, 1), result.stderr
        assert action == "check" or result.returncode == 0, result.stderr
        return result.returncode

    def iptables(self, *arguments: str) -> subprocess.CompletedProcess:
        return self.namespaces.run(self.name, "iptables", "-w", "10", *arguments)

    def rules(self, table: str = "filter") -> list[str]:
        return self.iptables("-t", table, "-S").stdout.splitlines()


def _node(role_renderer, namespaces, tmp_path, docker_rules: bool = True) -> Node:
    script = tmp_path / "vllm-firewall"
    script.write_text(_renderer(role_renderer, LIVE_INVENTORY, **LIVE_SETTINGS).template("vllm-firewall.j2"))
    name = namespaces.add("node")
    if docker_rules:
        namespaces.run(name, "iptables-restore", "-w", "10", stdin=DOCKER_RULES)
    return Node(namespaces, name, script)


@needs_netns
def test_apply_is_idempotent_repairs_drift_and_removes_itself(role_renderer, namespaces, tmp_path):
    node = _node(role_renderer, namespaces, tmp_path)
    docker_only, docker_nat = node.rules(), node.rules("nat")
    assert node.firewall("check") == 1

    node.firewall("apply")
    applied = node.rules()
    node.firewall("apply")
    assert node.rules() == applied  # the same rules, no duplicates
    assert set(applied) - set(docker_only) == ADDED_RULES and set(docker_only) <= set(applied)
    assert [rule for rule in applied if rule.startswith("-A DOCKER-USER ")] == [
        "-A DOCKER-USER -j VLLM-FORWARD", "-A DOCKER-USER -j RETURN"]
    assert [rule for rule in applied if rule.startswith("-A FORWARD ")][0] == "-A FORWARD -j DOCKER-USER"
    assert node.rules("nat") == docker_nat
    assert node.firewall("check") == 0

    # Drift: the allow list flushed; a rule put above the jump; a second copy of a jump.
    node.iptables("-F", "VLLM-ALLOW")
    node.iptables("-I", "INPUT", "1", "-s", "203.0.113.9", "-j", "ACCEPT")
    node.iptables("-A", "DOCKER-USER", "-j", "VLLM-FORWARD")
    assert node.firewall("check") == 1
    node.firewall("apply")
    assert node.firewall("check") == 0
    repaired = node.rules()
    assert [rule for rule in repaired if rule.startswith("-A INPUT ")] == [
        "-A INPUT -j VLLM-INPUT", "-A INPUT -s 203.0.113.9/32 -j ACCEPT"]
    assert sorted(rule for rule in repaired if "203.0.113.9" not in rule) == sorted(applied)

    node.iptables("-D", "INPUT", "-s", "203.0.113.9", "-j", "ACCEPT")
    node.firewall("remove")
    assert node.rules() == docker_only
    node.firewall("remove")  # nothing left to remove
    assert node.firewall("check") == 1


@needs_netns
def test_rules_applied_before_docker_starts_stay_first(role_renderer, namespaces, tmp_path):
    """At boot the unit may run before dockerd has made its chains: Docker then keeps DOCKER-USER as it is, only
    appends its RETURN rule when missing and puts the FORWARD jump first (libnetwork's arrangeUserFilterRule)."""
    node = _node(role_renderer, namespaces, tmp_path, docker_rules=False)
    node.firewall("apply")
    assert [rule for rule in node.rules() if rule.startswith("-A DOCKER-USER ")] == [
        "-A DOCKER-USER -j VLLM-FORWARD"]
    node.iptables("-A", "DOCKER-USER", "-j", "RETURN")
    node.iptables("-I", "FORWARD", "1", "-j", "DOCKER-USER")
    assert node.firewall("check") == 0


def _link(namespaces: Namespaces, node: str, node_interface: str, other: str, node_addresses: list[str],
          other_addresses: list[str]):
    """A veth pair from the node to another namespace (created there directly: no name in the host's)."""
    namespaces.run(node, "ip", "link", "add", node_interface, "type", "veth", "peer", "name", "eth0", "netns", other)
    for name, interface, addresses in ((node, node_interface, node_addresses), (other, "eth0", other_addresses)):
        for address in addresses:
            namespaces.run(name, "ip", "address", "add", address, "dev", interface)
        namespaces.run(name, "ip", "link", "set", interface, "up")


@needs_netns
def test_only_the_allowed_sources_connect(role_renderer, namespaces, tmp_path):
    node = _node(role_renderer, namespaces, tmp_path)
    client, container = namespaces.add("client"), namespaces.add("ctr")
    # The client namespace holds the load balancer's address, one in the allowed network, and one allowed nowhere.
    _link(namespaces, node.name, "uplink", client, ["10.99.0.1/24", "10.99.1.1/24"],
          ["10.99.0.10/24", "10.99.0.20/24", "10.99.1.7/24"])
    _link(namespaces, node.name, "docker0", container, ["172.17.0.1/16"], ["172.17.0.2/16"])
    namespaces.run(container, "ip", "route", "add", "default", "via", "172.17.0.1")
    namespaces.run(node.name, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    namespaces.start(container, "listen", "0.0.0.0:8000=vllm")
    # docker-proxy answers on the published address for connections Docker does not translate (the node's own
    # containers); the node exporter (guarded) and SSH (not guarded) are host services.
    namespaces.start(node.name, "listen", "10.99.0.1:9000=docker-proxy", "0.0.0.0:9100=exporter", "0.0.0.0:22=ssh")
    namespaces.start(client, "listen", "0.0.0.0:9000=elsewhere")

    from_client = [[source, "10.99.0.1", port] for source in ("10.99.0.10", "10.99.1.7", "10.99.0.20")
                   for port in (9000, 9100, 22)]
    from_container = [[None, "10.99.0.1", 9000], [None, "10.99.0.10", 9000]]
    from_node = [[None, "10.99.0.1", 9000], [None, "10.99.0.1", 9100], [None, "127.0.0.1", 9100]]

    def probe(namespace, probes):
        return json.loads(namespaces.run(namespace, sys.executable, __file__, "probe", json.dumps(probes)).stdout)

    def everyone():
        return probe(client, from_client) + probe(container, from_container) + probe(node.name, from_node)

    open_to_all = ["vllm", "exporter", "ssh"] * 3 + ["docker-proxy", "elsewhere", "vllm", "exporter", "exporter"]
    assert everyone() == open_to_all  # without the firewall every source connects

    node.firewall("apply")
    assert everyone() == [
        "vllm", "exporter", "ssh",          # the load balancer
        "vllm", "exporter", "ssh",          # the allowed network
        "refused", "refused", "ssh",        # anyone else: a reset at once (not a timeout), SSH untouched
        "refused",                          # the node's containers through docker-proxy
        "elsewhere",                        # the containers' own connections to the same port elsewhere
        "vllm", "exporter", "exporter",     # the node itself
    ]

    node.firewall("remove")
    assert everyone() == open_to_all


# --- this file as the namespaces' listener and prober --------------------------------------------------------

def _listen(specs: list[str]) -> None:
    """Answers every connection on each ADDRESS:PORT=REPLY with REPLY, then closes it."""
    def serve(server: socket.socket, reply: bytes):
        while True:
            connection, _ = server.accept()
            with connection:
                connection.sendall(reply)

    for spec in specs:
        address, reply = spec.split("=", 1)
        host, port = address.rsplit(":", 1)
        server = socket.create_server((host, int(port)))
        threading.Thread(target=serve, args=(server, reply.encode()), daemon=True).start()
    print("READY", flush=True)
    threading.Event().wait()  # until the test's SIGTERM


def _probe(probes: list) -> None:
    """Connects from SOURCE (or the routing's choice) to HOST:PORT for each probe; prints what each got."""
    results = []
    for source, host, port in probes:
        try:
            with socket.create_connection((host, port), timeout=3,
                                          source_address=(source, 0) if source else None) as connection:
                results.append(connection.recv(100).decode())
        except ConnectionRefusedError:
            results.append("refused")
        except OSError as error:
            results.append(f"failed: {error}")
    print(json.dumps(results))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("listen").add_argument("specs", nargs="+", help="ADDRESS:PORT=REPLY")
    commands.add_parser("probe").add_argument("probes", help="JSON list of [source or null, host, port]")
    arguments = parser.parse_args()
    if arguments.command == "listen":
        _listen(arguments.specs)
    else:
        _probe(json.loads(arguments.probes))
