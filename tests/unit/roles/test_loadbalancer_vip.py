"""The loadbalancer_vip role: the keepalived configuration and HAProxy check it renders for each balancer, what its
checks refuse (one case per rule, each message naming the variable and the fix), that keepalived accepts the
configuration (`keepalived -t`, the role's validate step), that the check tells a live HAProxy from a dead or a
hung one, that playbooks/preflight.yml refuses a virtual IP outside the balancers' subnet from real facts, and,
with Debian's keepalived and HAProxy running the rendered configurations in network namespaces
(lab/balancer_pair.py), what clients of the virtual IP see when its holder goes down or its HAProxy dies.
"""

import os
import pathlib
import shutil
import socket
import subprocess
import sys
import threading
import time

import pytest
import yaml

from lab.balancer_pair import BalancerPair, unavailable

REPO = pathlib.Path(__file__).resolve().parents[3]
VIP = "10.20.0.100"
ADDRESSES = {"lb01": "10.20.0.5", "lb02": "10.20.0.6", "node01": "10.20.0.11"}
INVENTORY = {
    "groups": {"loadbalancers": ["lb01", "lb02"], "gpu_nodes": ["node01"], "all": list(ADDRESSES)},
    "hostvars": {host: {"ansible_host": address} for host, address in ADDRESSES.items()},
}
SETTINGS = {"loadbalancer_vip_address": VIP, "loadbalancer_listen_address": VIP}


def _facts(address: str, interface: str = "eth0", prefix: int = 24, secondaries=()) -> dict:
    """What the setup module reports for a host with one interface (keys with - written as _)."""
    ipv4 = {"address": address, "prefix": str(prefix)}
    return {"default_ipv4": {"interface": interface, "address": address}, "interfaces": ["lo", interface],
            "lo": {"ipv4": {"address": "127.0.0.1", "prefix": "8"}},
            interface.replace("-", "_"): {"ipv4": ipv4, "ipv4_secondaries": [
                {"address": secondary, "prefix": str(prefix)} for secondary in secondaries]}}


def _renderer(role_renderer, host: str = "lb01", facts: dict | None = None, **overrides):
    from ansible.plugins.loader import filter_loader

    # The role's filter, found without relying on the working directory's ansible.cfg.
    filter_loader.add_directory(str(REPO / "plugins" / "filter"))
    return role_renderer("loadbalancer_vip", facts or _facts(ADDRESSES[host]),
                         overrides={**INVENTORY, "inventory_hostname": host, **SETTINGS, **overrides})


def _lines(config: str) -> list[str]:
    """The configuration's lines, stripped, without comments and blank lines."""
    return [line.strip() for line in config.splitlines() if line.strip() and not line.strip().startswith("#")]


def _block(config: str, header: str) -> list[str]:
    """The lines of one top-level block ("vrrp_instance loadbalancer_vip", ...), nested blocks included."""
    lines = _lines(config)
    start = lines.index(header + " {") + 1
    depth, end = 1, start
    while depth:
        depth += lines[end].endswith("{") - (lines[end] == "}")
        end += 1
    return lines[start:end - 1]


def test_each_balancer_gets_its_instance(role_renderer):
    first, second = (_renderer(role_renderer, host).template("keepalived.conf.j2") for host in ("lb01", "lb02"))
    assert _block(first, "global_defs") == ["router_id lb01", "vrrp_version 3", "script_user root",
                                            "enable_script_security"]
    assert _block(first, "vrrp_script haproxy") == [
        'script "/bin/sh /usr/local/sbin/loadbalancer-vip-check-haproxy"', "interval 1", "timeout 1", "fall 1",
        "rise 2", "weight 0", "init_fail"]
    instance = ["state BACKUP", "interface eth0", "virtual_router_id 51", "priority 100", "advert_int 0.5",
                "nopreempt", "virtual_ipaddress {", "10.20.0.100/24 dev eth0", "}", "track_script {", "haproxy", "}"]
    assert _block(first, "vrrp_instance loadbalancer_vip") == instance
    assert _block(second, "vrrp_instance loadbalancer_vip") == [
        "priority 99" if line == "priority 100" else line for line in instance]


def test_priorities_preemption_unicast_and_the_interface_from_the_inventory(role_renderer):
    inventory = {**INVENTORY["hostvars"], "lb02": {"ansible_host": "10.20.0.6", "loadbalancer_vip_priority": 150}}
    config = _renderer(role_renderer, "lb02", _facts("10.20.1.6", "br-lan", 23), hostvars=inventory,
                       loadbalancer_vip_interface="br-lan", loadbalancer_vip_preempt=True,
                       loadbalancer_vip_router_id=7, loadbalancer_vip_advert_interval=0.25,
                       loadbalancer_vip_unicast_peers=["10.20.1.5", "10.20.1.6"]).template("keepalived.conf.j2")
    assert _block(config, "vrrp_instance loadbalancer_vip") == [
        "state BACKUP", "interface br-lan", "virtual_router_id 7", "priority 150", "advert_int 0.25",
        "unicast_src_ip 10.20.1.6", "unicast_peer {", "10.20.1.5", "}", "check_unicast_src",
        # The prefix length comes from the interface's facts (br-lan is br_lan there).
        "virtual_ipaddress {", "10.20.0.100/23 dev br-lan", "}", "track_script {", "haproxy", "}"]


def test_the_check_asks_the_loadbalancer_roles_admin_socket(role_renderer):
    script = _renderer(role_renderer, loadbalancer_admin_socket="/run/haproxy/lb.sock").template(
        "loadbalancer-vip-check-haproxy.j2")
    assert 'echo "show info" | socat -t 1 -T 1 stdio "unix-connect:/run/haproxy/lb.sock" 2>/dev/null \\' in (
        script.splitlines())


def _problems(renderer, tasks_file: str) -> list[str]:
    """The messages of the role's assert in tasks_file, which passes only when there is none."""
    task = yaml.safe_load((renderer.role_dir / "tasks" / tasks_file).read_text())[0]
    check = task["ansible.builtin.assert"]
    problems = renderer.render(check["fail_msg"], task["vars"])
    assert renderer.render("{{ " + check["that"] + " }}", task["vars"]) == (problems == [])
    return problems


def test_valid_settings_pass_both_checks(role_renderer):
    for host in ("lb01", "lb02"):
        renderer = _renderer(role_renderer, host)
        assert _problems(renderer, "validate.yml") == [] and _problems(renderer, "preflight.yml") == []


def test_without_an_address_the_role_is_off_and_checks_nothing(role_renderer):
    renderer = _renderer(role_renderer, loadbalancer_vip_address="", loadbalancer_vip_router_id=0,
                         groups={"loadbalancers": ["lb01"], "all": ["lb01"]})
    assert renderer.var("_loadbalancer_vip_enabled") is False
    assert _problems(renderer, "validate.yml") == [] and _problems(renderer, "preflight.yml") == []


@pytest.mark.parametrize(("overrides", "expected"), [
    ({"loadbalancer_vip_address": "10.20.0.100/24", "loadbalancer_listen_address": "10.20.0.100"},
     "loadbalancer_vip_address: '10.20.0.100/24' has a prefix length: give the address alone (10.20.0.100)"),
    ({"loadbalancer_vip_address": "vip.example.net"},
     "loadbalancer_vip_address: 'vip.example.net' is not an IPv4 address: set it to a free address"),
    ({"loadbalancer_vip_address": "10.20.0.300"}, "loadbalancer_vip_address: '10.20.0.300' is not an IPv4 address"),
    ({"loadbalancer_vip_address": "fd00::100"}, "is an IPv6 address; this role moves an IPv4 address only"),
    ({"loadbalancer_vip_address": "127.0.0.100"}, "is not an address clients can reach on a network"),
    ({"loadbalancer_vip_address": "10.20.0.11", "loadbalancer_listen_address": "10.20.0.11"},
     "loadbalancer_vip_address 10.20.0.11 is the address of node01 (its ansible_host): the virtual IP must be free"),
    ({"loadbalancer_vip_router_id": 0}, "loadbalancer_vip_router_id is 0: a VRRP virtual router id is a number from "
                                        "1 to 255. Pick one that no other VRRP router"),
    ({"loadbalancer_vip_router_id": 256}, "loadbalancer_vip_router_id is 256"),
    ({"loadbalancer_vip_advert_interval": 0}, "loadbalancer_vip_advert_interval is 0: VRRPv3 sends adverts every "
                                              "0.01 to 40.95 s"),
    ({"loadbalancer_vip_advert_interval": 60}, "loadbalancer_vip_advert_interval is 60"),
    ({"loadbalancer_vip_check_fall": 0}, "loadbalancer_vip_check_fall is 0: set a whole number of checks, at least 1"),
    ({"loadbalancer_vip_check_rise": 0}, "loadbalancer_vip_check_rise is 0"),
    ({"groups": {"loadbalancers": ["lb01"], "all": ["lb01"]}},
     "the group 'loadbalancers' (loadbalancer_vip_group) has 1 host(s) (lb01): the address can only fail over to a "
     "second balancer. Add a second balancer to the group, or leave loadbalancer_vip_address empty"),
    ({"loadbalancer_vip_group": "edge"}, "lb01 would share the virtual IP but is not in the group 'edge' "
                                         "(loadbalancer_vip_group)"),
    ({"hostvars": {**INVENTORY["hostvars"], "lb01": {"ansible_host": "10.20.0.5", "loadbalancer_vip_priority": 255}}},
     "loadbalancer_vip_priority of lb01 is 255: set a number from 1 to 254"),
    ({"hostvars": {**INVENTORY["hostvars"], "lb01": {"ansible_host": "10.20.0.5", "loadbalancer_vip_priority": 99}}},
     "loadbalancer_vip_priority is 99 on lb01, lb02: each balancer needs its own priority"),
    ({"loadbalancer_vip_unicast_peers": ["10.20.0.5", "lb02"]},
     "loadbalancer_vip_unicast_peers: 'lb02' is not an IPv4 address"),
    ({"loadbalancer_vip_unicast_peers": ["10.20.0.5"]},
     "loadbalancer_vip_unicast_peers lists 1 address(es) for 2 balancers: list every balancer's address"),
    ({"loadbalancer_vip_unicast_peers": ["10.20.0.5", "10.20.0.100"]},
     "loadbalancer_vip_unicast_peers lists the virtual IP 10.20.0.100"),
    ({"loadbalancer_listen_address": "10.20.0.5"},
     "loadbalancer_listen_address is 10.20.0.5, but clients connect to loadbalancer_vip_address 10.20.0.100: HAProxy "
     "would not answer there. Set loadbalancer_listen_address: \"{{ loadbalancer_vip_address }}\""),
], ids=["address-with-prefix", "address-name", "address-malformed", "address-ipv6", "address-loopback",
        "address-of-a-node", "router-id-0", "router-id-256", "advert-0", "advert-too-long", "fall-0", "rise-0",
        "one-balancer", "host-outside-the-group", "priority-255", "priorities-equal", "peer-name", "peers-missing",
        "peer-is-the-vip", "listen-elsewhere"])
def test_bad_settings_are_refused_before_any_host_is_contacted(role_renderer, overrides, expected):
    problems = _problems(_renderer(role_renderer, **overrides), "validate.yml")
    assert any(expected in problem for problem in problems), problems


def test_listen_address_left_at_the_loadbalancer_roles_default_is_refused(role_renderer):
    """On the controller the loadbalancer role's default is not in scope: an unset listen address is refused."""
    _renderer(role_renderer)  # adds the role's filter
    renderer = role_renderer("loadbalancer_vip", _facts(ADDRESSES["lb01"]), overrides={
        **INVENTORY, "inventory_hostname": "lb01", "loadbalancer_vip_address": VIP})
    assert _problems(renderer, "validate.yml") == [
        "loadbalancer_listen_address is not set (HAProxy listens on the host's own address), but clients connect to "
        "loadbalancer_vip_address 10.20.0.100: HAProxy would not answer there. Set loadbalancer_listen_address: "
        "\"{{ loadbalancer_vip_address }}\" for the balancers' group (inventories/prod/hosts.yml shows how)."]


@pytest.mark.parametrize(("facts", "overrides", "expected"), [
    (_facts("10.30.0.5"), {}, "loadbalancer_vip_address 10.20.0.100 is outside lb01's subnet on eth0 (10.30.0.0/24): "
                              "VRRP moves an address within one network. Choose a free address in 10.30.0.0/24, or "
                              "set loadbalancer_vip_interface"),
    (_facts("10.20.0.100"), {}, "loadbalancer_vip_address 10.20.0.100 is lb01's own address (on eth0): the virtual IP "
                                "must be free"),
    (_facts("10.20.0.5"), {"hostvars": {**INVENTORY["hostvars"], "lb02": {
        "ansible_host": "lb02.example.net", "ansible_facts": {"default_ipv4": {"address": VIP}}}}},
     "loadbalancer_vip_address 10.20.0.100 is the address of lb02 (from its facts)"),
    (_facts("10.20.0.5"), {"loadbalancer_vip_interface": "eth9"},
     "loadbalancer_vip_interface 'eth9' is not an interface of lb01 (it has eth0, lo): set it to the interface"),
    ({"interfaces": ["lo"], "lo": {}}, {}, "lb01 has no default IPv4 route, so loadbalancer_vip_interface has no "
                                          "default: set it"),
    ({**_facts("10.20.0.5"), "eth1": {"ipv4_secondaries": []}, "interfaces": ["lo", "eth0", "eth1"]},
     {"loadbalancer_vip_interface": "eth1"}, "loadbalancer_vip_interface eth1 of lb01 has no IPv4 address"),
    (_facts("10.20.0.5"), {"loadbalancer_vip_unicast_peers": ["10.20.0.6", "10.20.0.7"]},
     "loadbalancer_vip_unicast_peers does not list lb01's address on eth0 (10.20.0.5)"),
    (_facts("10.20.0.5"), {"loadbalancer_vip_unicast_peers": ["10.20.0.5", "10.30.0.6"]},
     "loadbalancer_vip_unicast_peers: 10.30.0.6 outside lb01's subnet on eth0 (10.20.0.0/24)"),
], ids=["outside-the-subnet", "own-address", "another-balancers-address", "no-such-interface", "no-default-route",
        "interface-without-ipv4", "unicast-without-itself", "unicast-peer-elsewhere"])
def test_a_virtual_ip_the_network_cannot_carry_is_refused_in_preflight(role_renderer, facts, overrides, expected):
    problems = _problems(_renderer(role_renderer, "lb01", facts, **overrides), "preflight.yml")
    assert any(expected in problem for problem in problems), problems


def test_the_holder_carrying_the_address_already_is_not_refused(role_renderer):
    """A second run finds the virtual IP as a secondary address of the holder's interface."""
    facts = _facts("10.20.0.5", secondaries=[VIP])
    facts["all_ipv4_addresses"] = ["10.20.0.5", VIP]
    assert _problems(_renderer(role_renderer, "lb01", facts), "preflight.yml") == []


def test_check_script_is_valid_sh(role_renderer, tmp_path):
    """What the role's `validate: sh -n %s` runs."""
    script = tmp_path / "check"
    script.write_text(_renderer(role_renderer).template("loadbalancer-vip-check-haproxy.j2"))
    result = subprocess.run(["/bin/sh", "-n", str(script)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(shutil.which("haproxy") is None or shutil.which("socat") is None,
                    reason="needs haproxy and socat (apt-get install haproxy socat)")
def test_the_check_passes_only_while_haproxy_answers(role_renderer, tmp_path):
    admin = tmp_path / "admin.sock"
    script = tmp_path / "check"
    script.write_text(_renderer(role_renderer, _loadbalancer_vip_haproxy_socket=str(admin)).template(
        "loadbalancer-vip-check-haproxy.j2"))

    def check() -> tuple[int, float]:
        started = time.monotonic()
        result = subprocess.run(["/bin/sh", str(script)], capture_output=True, timeout=30)
        return result.returncode, time.monotonic() - started

    config = tmp_path / "haproxy.cfg"
    config.write_text(f"global\n    stats socket {admin} mode 660 level admin\ndefaults\n    mode http\n")
    haproxy = subprocess.Popen(["haproxy", "-db", "-f", str(config)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while check()[0] != 0:
            assert time.monotonic() < deadline, "the check did not pass against a running HAProxy within 10 s"
            time.sleep(0.1)
    finally:
        haproxy.kill()
        haproxy.wait(timeout=10)
    assert check()[0] == 1  # the socket file is left behind: connection refused

    # A hung HAProxy: the socket accepts, nothing answers.
    admin.unlink()
    hung = socket.socket(socket.AF_UNIX)
    hung.bind(str(admin))
    hung.listen()
    accepted = []
    threading.Thread(target=lambda: accepted.append(hung.accept()), daemon=True).start()
    returncode, took = check()
    hung.close()
    assert returncode == 1 and took < 3 and accepted


# --- keepalived and HAProxy for real, in network namespaces -------------------------------------------------

needs_lab = pytest.mark.skipif(bool(unavailable()), reason=unavailable() or "-")


@pytest.fixture
def namespace():
    """A network namespace with eth0 (one end of a veth pair) at 10.20.0.5/24 and a default route through it."""
    name = f"vipt{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=10)
    try:
        for command in (["ip", "link", "set", "lo", "up"],
                        ["ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth1"],
                        ["ip", "address", "add", "10.20.0.5/24", "dev", "eth0"],
                        ["ip", "link", "set", "eth0", "up"], ["ip", "link", "set", "eth1", "up"],
                        ["ip", "route", "add", "default", "via", "10.20.0.1"]):
            subprocess.run(["ip", "netns", "exec", name, *command], check=True, capture_output=True, timeout=10)
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True, timeout=10)


@needs_lab
@pytest.mark.parametrize("overrides", [{}, {"loadbalancer_vip_unicast_peers": ["10.20.0.5", "10.20.0.6"],
                                            "loadbalancer_vip_preempt": True}], ids=["defaults", "unicast-preempt"])
def test_keepalived_accepts_the_configuration(role_renderer, tmp_path, namespace, overrides):
    """What the role's `validate: keepalived -t -f %s` runs on the balancer."""
    check = tmp_path / "check"
    renderer = _renderer(role_renderer, _loadbalancer_vip_check_script=str(check), **overrides)
    check.write_text(renderer.template("loadbalancer-vip-check-haproxy.j2"))
    config = tmp_path / "keepalived.conf"
    config.write_text(renderer.template("keepalived.conf.j2"))
    result = subprocess.run(["ip", "netns", "exec", namespace, "keepalived", "-t", "-f", str(config)],
                            capture_output=True, text=True, timeout=30)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")

    # An interface the balancer does not have is refused, and the old configuration stays.
    config.write_text(_renderer(role_renderer, loadbalancer_vip_interface="eth9").template("keepalived.conf.j2"))
    result = subprocess.run(["ip", "netns", "exec", namespace, "keepalived", "-t", "-f", str(config)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode != 0 and "eth9" in result.stderr


def _preflight(namespace: str, tmp_path: pathlib.Path, address: str) -> subprocess.CompletedProcess:
    """playbooks/preflight.yml for two balancers that are both this namespace (local connection, real facts)."""
    balancer = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable, "ansible_become": False}
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"all": {"children": {
        "gpu_nodes": {"hosts": {"node01": {"ansible_host": "10.20.0.11"}}},
        "loadbalancers": {"hosts": {"lb01": balancer, "lb02": balancer},
                          "vars": {"loadbalancer_vip_address": address, "loadbalancer_listen_address": address}}}}}))
    return subprocess.run(
        ["ip", "netns", "exec", namespace, str(pathlib.Path(sys.executable).with_name("ansible-playbook")),
         "playbooks/preflight.yml", "-i", str(inventory), "--limit", "loadbalancers"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"})


@needs_lab
def test_preflight_refuses_a_virtual_ip_outside_the_subnet_from_real_facts(tmp_path, namespace):
    """The setup module's facts in a namespace whose eth0 is 10.20.0.5/24 (the default route's interface)."""
    inside = _preflight(namespace, tmp_path, "10.20.0.100")
    assert inside.returncode == 0, (inside.stdout + inside.stderr)[-3000:]
    outside = _preflight(namespace, tmp_path, "10.30.0.100")
    output = outside.stdout + outside.stderr
    assert outside.returncode != 0, output[-3000:]
    assert ("loadbalancer_vip_address 10.30.0.100 is outside lb01's subnet on eth0 (10.20.0.0/24): VRRP moves an "
            "address within one network. Choose a free address in 10.20.0.0/24") in output, output[-3000:]


@pytest.fixture
def pair(role_renderer, tmp_path):
    with BalancerPair(tmp_path, role_renderer) as started:
        yield started


def _other(balancer: str) -> str:
    return {"lb01": "lb02", "lb02": "lb01"}[balancer]


def _assert_the_address_moved_within_3_s(result):
    # Either balancer may hold the address first: with nopreempt, the one whose keepalived is ready first keeps it.
    assert result.holder_after == _other(result.holder_before), result.summary()
    assert result.vip_back_after is not None and result.vip_back_after <= 3.0, result.summary()


@needs_lab
def test_clients_survive_the_holder_going_down(pair):
    result = pair.failover("balancer")
    print(result.summary())
    _assert_the_address_moved_within_3_s(result)
    # Requests in flight on the vanished balancer fail (their connections are gone), and so may those opened in the
    # few milliseconds the fault takes to apply; every request started later succeeds.
    assert result.failed_in_flight > 0, "no request was cut: the fault missed the holder? " + result.summary()
    assert result.failed_new == [], result.summary()


# keepalived checks HAProxy once a second: until the check fails, the holder keeps the address and refuses
# connections. Allowance for the check's own run time on a busy test machine.
CHECK_WINDOW = 1.0 + 0.5


@needs_lab
def test_clients_survive_the_holders_haproxy_dying(pair):
    result = pair.failover("haproxy")
    print(result.summary())
    _assert_the_address_moved_within_3_s(result)
    assert result.failed_in_flight > 0, "no request was cut: the fault missed the holder? " + result.summary()
    # Later, only connections refused before the check gave the address up fail: nothing reached a server.
    assert {failure["error"] for failure in result.failed_new} <= {"refused"}, result.summary()
    assert all(failure["start"] < CHECK_WINDOW for failure in result.failed_new), result.summary()

