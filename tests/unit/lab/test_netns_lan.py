"""lab/netns_lan.py: members on the bridge reach each other at their addresses, a shaped link has tbf on both ends,
and closing the LAN, also after a step of its set-up failed, leaves no namespace and no process behind."""

import itertools
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

from lab.netns_lan import NetnsLan


def _unavailable() -> str:
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    missing = [tool for tool in ("ip", "tc") if shutil.which(tool) is None]
    return f"needs {', '.join(missing)}" if missing else ""


pytestmark = pytest.mark.skipif(bool(_unavailable()), reason=_unavailable() or "-")
_names = itertools.count()
# Accepts one connection on port 9000 of the address given, says READY first and then sends its namespace's eth0
# address to the client.
SERVER = """
import socket, sys
with socket.create_server((sys.argv[1], 9000)) as server:
    print("READY", flush=True)
    connection, _ = server.accept()
    connection.sendall(sys.argv[1].encode())
    connection.close()
"""


@pytest.fixture
def name():
    return f"nlt{os.getpid()}-{next(_names)}"


def _namespaces(name: str) -> list[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return [line.split()[0] for line in listed.splitlines() if line.startswith(f"{name}-")]


def _ended(pid: int) -> bool:
    """Gone, or dead and not yet reaped by whoever adopted it."""
    try:
        return pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_members_talk_over_the_bridge_and_close_removes_namespaces_and_processes(name):
    with NetnsLan(name) as lan:
        lan.add("a", "10.209.0.2")
        lan.add("b", "10.209.0.3")
        assert sorted(_namespaces(name)) == [f"{name}-a", f"{name}-b", f"{name}-switch"]
        assert " 10.209.0.2/24 " in lan.run("a", "ip", "-4", "-o", "address", "show", "dev", "eth0").stdout
        assert "master br0" in lan.run("switch", "ip", "-o", "link", "show", "dev", "b").stdout
        server = lan.spawn("b", sys.executable, "-c", SERVER, "10.209.0.3", stdout=subprocess.PIPE, text=True)
        assert server.stdout.readline() == "READY\n"
        answer = lan.run("a", sys.executable, "-c", "import socket; "
                         "print(socket.create_connection(('10.209.0.3', 9000), 5).recv(100).decode())").stdout
        assert answer == "10.209.0.3\n"
        # One process `spawn` starts and one it does not know of (a shell's background child, left running).
        sleeper = lan.spawn("a", "sleep", "600")
        orphan = int(lan.run("b", "sh", "-c", "sleep 600 >/dev/null 2>&1 & echo $!").stdout)
        assert lan.run("a", "false", check=False).returncode == 1
        with pytest.raises(RuntimeError, match="false in a"):
            lan.run("a", "false")
    assert _namespaces(name) == []
    assert sleeper.returncode == -9 and _ended(orphan)
    lan.close()  # again: nothing left to do, nothing raised


def test_a_shaped_link_has_tbf_on_both_ends_and_an_unshaped_one_none(name):
    with NetnsLan(name) as lan:
        lan.add("fast", "10.209.0.2")
        lan.add("slow", "10.209.0.3", rate_mbit=50)
        for where, device in (("slow", "eth0"), ("switch", "slow")):
            assert " rate 50Mbit burst 256Kb lat 50ms" in lan.run(where, "tc", "qdisc", "show", "dev", device).stdout
        for where, device in (("fast", "eth0"), ("switch", "fast")):
            assert "tbf" not in lan.run(where, "tc", "qdisc", "show", "dev", device).stdout


@pytest.mark.parametrize("member, address, error", [
    ("b", "not-an-address", "ip address add not-an-address/24 dev eth0 in b"),
    ("a-name-too-long-for-an-interface", "10.209.0.3", "ip link add name a-name-too-long-for-an-interface"),
], ids=["bad-address", "long-name"])
def test_a_failed_set_up_leaves_nothing_behind(name, member, address, error):
    with pytest.raises(RuntimeError, match=error):
        with NetnsLan(name, prefix_length=24) as lan:
            lan.add("a", "10.209.0.2")
            lan.add(member, address)
    assert _namespaces(name) == []
