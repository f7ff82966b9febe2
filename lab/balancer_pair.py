"""Two HAProxy balancers sharing a virtual IP through keepalived, in network namespaces, for failover measurements.

A switch namespace holds a bridge; a client, two balancers and two stand-in vLLM servers each get a namespace
with an `eth0` on that bridge, on 10.203.0.0/24 (lab/netns_lan.py: the lab's own network, nothing leaves the
namespaces, and the host's network is never touched). Each balancer runs Debian's haproxy and keepalived with the
configurations the loadbalancer and loadbalancer_vip roles render for it (only the paths of sockets and scripts,
and HAProxy's root-only lines, are changed), and `net.ipv4.ip_nonlocal_bind=1` as the role sets it. The servers
are the stand-in of tests/unit/roles/test_loadbalancer.py.

`BalancerPair.failover(kind)` puts client load on the virtual IP, injects a fault into the balancer that holds
it, and returns what the client saw:

    balancer   the holder vanishes: its interface goes down (SIOCSIFFLAGS from a helper started beforehand, this
               file's `cut`), then its keepalived and HAProxy are killed (SIGKILL)
    haproxy    only the holder's HAProxy is killed (SIGKILL); its keepalived keeps running

Run in the client namespace as `python -m lab.balancer_pair load` (from the repository root), this file is the
load client: --threads threads (12) send short streamed requests through the virtual IP in a loop, each on a new
connection with a 5 s socket timeout and a pause of up to --think seconds (0.3) between two, and a prober opens a
new connection every 20 ms to GET /health with a 100 ms timeout (its answers time the address's return; they are
not counted as requests). It stops when its stdin is closed and prints every request and probe as JSON, timed
with CLOCK_MONOTONIC, which the namespaces share.
"""

from __future__ import annotations

import argparse
import dataclasses
import fcntl
import http.client
import itertools
import json
import os
import pathlib
import random
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

from lab.netns_lan import NetnsLan

REPO = pathlib.Path(__file__).resolve().parents[1]
STANDIN = REPO / "tests" / "unit" / "roles" / "test_loadbalancer.py"
PREFIX = 24
VIP = "10.203.0.100"
CLIENT = "10.203.0.10"
BALANCERS = {"lb01": "10.203.0.2", "lb02": "10.203.0.3"}
SERVERS = {"node01": "10.203.0.21", "node02": "10.203.0.22"}
PORT = 8000
# Each request streams two chunks 50 ms apart (the stand-in's /v1/stream), like a short generation.
REQUEST_PATH = "/v1/stream?chunks=2"
# Lines of HAProxy's `global` that need the Debian package's user and chroot.
ROOT_ONLY = ("chroot ", "user ", "group ", "daemon")
FAULTS = ("balancer", "haproxy")
# Client load: about 45 requests a second, some 5 in flight at any time, and threads free to open new connections
# while the address moves.
THREADS, THINK = 12, 0.3
_names = itertools.count()


def unavailable() -> str:
    """Why the lab cannot run here, or an empty string."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    missing = [tool for tool in ("ip", "haproxy", "keepalived", "socat") if shutil.which(tool) is None]
    return f"needs {', '.join(missing)} (scripts/setup-dev-host.sh installs them)" if missing else ""


@dataclasses.dataclass
class Failover:
    """What the client saw around one fault. Times are in seconds from the start of the fault; the fault takes a
    few milliseconds to apply (`ip link set down`, the kernel reaping the killed HAProxy), and requests opened in
    that time are counted apart."""

    fault: str
    holder_before: str
    holder_after: str
    fault_took: float                      # from the start of the fault until it was complete
    vip_back_after: float | None           # the first probe answered, of those sent once the fault was complete
    requests: int                          # requests sent during the whole run
    in_flight: int                         # requests started before the fault and not finished when it started
    failed_in_flight: int                  # of those, how many failed
    opened_during_fault: int               # requests started while the fault was being applied
    failed_opened_during_fault: int        # of those, how many failed
    failed_new: list[dict]                 # requests started once the fault was complete that failed: {start, error}
    slowest_new: float                     # the longest request started once the fault was complete

    def summary(self) -> str:
        back = f"{self.vip_back_after:.2f} s" if self.vip_back_after is not None else "never"
        new = ", ".join(f"{failure['error']} at +{failure['start']:.2f} s" for failure in self.failed_new[:5])
        more = f" (+{len(self.failed_new) - 5} more)" if len(self.failed_new) > 5 else ""
        return (f"{self.fault}: {self.holder_before} -> {self.holder_after}, the address answered again after {back}; "
                f"{self.requests} requests, {self.in_flight} in flight at the fault, {self.failed_in_flight} of them "
                f"failed; {self.opened_during_fault} opened during the {self.fault_took * 1000:.0f} ms the fault took, "
                f"{self.failed_opened_during_fault} of them failed; {len(self.failed_new)} started later failed"
                f"{': ' + new + more if new else ''}; slowest request started later: {self.slowest_new:.2f} s")


class BalancerPair:
    """The namespaces, servers and balancers of one run; a context manager that removes them all on exit."""

    def __init__(self, workdir: pathlib.Path, renderer_class, **vip_settings):
        self.workdir, self.renderer_class, self.vip_settings = workdir, renderer_class, vip_settings
        self.lan = NetnsLan(f"vip{os.getpid()}-{next(_names)}", prefix_length=PREFIX)
        self.processes: dict[str, subprocess.Popen] = {}  # by key (see _spawn); the LAN kills them all on close

    # --- set-up and tear-down -----------------------------------------------------------------------------

    def __enter__(self) -> BalancerPair:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info):
        self.close()

    def run(self, member: str, *command: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.lan.run(member, *command, check=check)

    def _start(self):
        self.lan.start()
        self.lan.add("client", CLIENT)
        for name, address in SERVERS.items():
            self.lan.add(name, address)
            self._spawn(name, name, sys.executable, str(STANDIN), "--host", address, "--port", str(PORT),
                        "--name", name)
        for name, address in BALANCERS.items():
            self.lan.add(name, address)
            # What the loadbalancer_vip role sets, so that a backup's HAProxy binds the virtual IP.
            self.run(name, "sysctl", "-qw", "net.ipv4.ip_nonlocal_bind=1")
            self._start_haproxy(name)
        for name in BALANCERS:
            self.start_keepalived(name)

    def _spawn(self, key: str, member: str, *command: str) -> subprocess.Popen:
        """A process in the member's namespace, in its own process group, logging to workdir/<key>.log."""
        self.processes[key] = self.lan.spawn(member, *command, log=self.workdir / f"{key}.log")
        return self.processes[key]

    def _start_haproxy(self, name: str):
        directory = self.workdir / name
        directory.mkdir(exist_ok=True)
        (directory / "server-state").write_text("1\n")
        config = self.render("loadbalancer", name, "haproxy.cfg.j2", loadbalancer_listen_address=VIP,
                             loadbalancer_port=PORT, loadbalancer_admin_socket=str(directory / "admin.sock"),
                             loadbalancer_backend_servers=[{"name": server, "address": address, "port": PORT}
                                                           for server, address in SERVERS.items()],
                             _loadbalancer_server_state_file=str(directory / "server-state"))
        (directory / "haproxy.cfg").write_text(
            "\n".join(line for line in config.splitlines() if not line.strip().startswith(ROOT_ONLY)) + "\n")
        self._spawn(f"{name}-haproxy", name, shutil.which("haproxy"), "-db", "-f", str(directory / "haproxy.cfg"))
        deadline = time.monotonic() + 10
        while not (directory / "admin.sock").exists():
            if self.processes[f"{name}-haproxy"].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"HAProxy of {name} did not start, see {self.workdir / (name + '-haproxy.log')}")
            time.sleep(0.05)

    def keepalived_config(self, name: str) -> pathlib.Path:
        """The loadbalancer_vip role's keepalived.conf and check for the balancer, under workdir/<name>/."""
        directory = self.workdir / name
        paths = {"_loadbalancer_vip_check_script": str(directory / "check-haproxy"),
                 "_loadbalancer_vip_haproxy_socket": str(directory / "admin.sock")}
        (directory / "check-haproxy").write_text(
            self.render("loadbalancer_vip", name, "loadbalancer-vip-check-haproxy.j2", **paths))
        (directory / "keepalived.conf").write_text(
            self.render("loadbalancer_vip", name, "keepalived.conf.j2", **paths))
        return directory / "keepalived.conf"

    def start_keepalived(self, name: str):
        directory = self.workdir / name
        config = self.keepalived_config(name)
        self._spawn(f"{name}-keepalived", name, shutil.which("keepalived"), "--dont-fork", "--log-console",
                    "--log-detail", "--no-syslog", "--vrrp", "--use-file", str(config),
                    "--pid", str(directory / "keepalived.pid"), "--vrrp_pid", str(directory / "vrrp.pid"),
                    "--checkers_pid", str(directory / "checkers.pid"), "--bfd_pid", str(directory / "bfd.pid"))

    def render(self, role: str, name: str, template: str, **overrides) -> str:
        """A role's template for balancer `name`, with the facts and inventory a play would give it."""
        facts = {"default_ipv4": {"interface": "eth0", "address": BALANCERS[name]}, "interfaces": ["lo", "eth0"],
                 "eth0": {"ipv4": {"address": BALANCERS[name], "prefix": str(PREFIX)}}}
        inventory = {"groups": {"loadbalancers": list(BALANCERS), "all": list(BALANCERS) + list(SERVERS)},
                     "hostvars": {host: {"ansible_host": address}
                                  for host, address in {**BALANCERS, **SERVERS}.items()},
                     "inventory_hostname": name}
        settings = {"loadbalancer_vip_address": VIP, **self.vip_settings} if role == "loadbalancer_vip" else {}
        return self.renderer_class(role, facts, overrides={**inventory, **settings, **overrides}).template(template)

    def close(self):
        self.lan.close()

    # --- observation --------------------------------------------------------------------------------------

    def holders(self) -> list[str]:
        """The balancers whose eth0 holds the virtual IP."""
        return [name for name in BALANCERS
                if f" {VIP}/" in self.run(name, "ip", "-4", "-o", "address", "show", "dev", "eth0").stdout]

    def wait_for_holder(self, timeout: float = 15) -> str:
        deadline = time.monotonic() + timeout
        while len(holders := self.holders()) != 1:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no single balancer took {VIP} within {timeout} s (holders: {holders}); see the "
                                   f"keepalived logs in {self.workdir}")
            time.sleep(0.1)
        return holders[0]

    # --- the measurement ----------------------------------------------------------------------------------

    def _link_cutter(self, member: str) -> subprocess.Popen:
        """This file's `cut` in the member's namespace, ready to take its eth0 down when told (starting `ip` at the
        fault would take milliseconds, and far longer on a busy machine)."""
        cutter = self.lan.spawn(member, sys.executable, "-m", "lab.balancer_pair", "cut", "eth0", cwd=REPO,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.processes[f"{member}-cut"] = cutter
        if cutter.stdout.readline().strip() != "READY":
            raise RuntimeError(f"the link cutter did not start in {member}")
        return cutter

    def inject(self, fault: str, holder: str, cutter: subprocess.Popen | None = None) -> tuple[float, float]:
        """Injects the fault into the holder; returns when it started and when it was complete (CLOCK_MONOTONIC)."""
        haproxy = self.processes[f"{holder}-haproxy"]
        started = time.monotonic()
        if fault == "haproxy":
            os.kill(haproxy.pid, signal.SIGKILL)
            haproxy.wait(timeout=10)  # reaped: its sockets are closed
            return started, time.monotonic()
        cutter.stdin.write("\n")
        cutter.stdin.flush()
        if cutter.stdout.readline().strip() != "DOWN":
            raise RuntimeError(f"the link cutter did not take {holder}'s eth0 down")
        complete = time.monotonic()
        for process in (self.processes[f"{holder}-keepalived"], haproxy):
            os.killpg(process.pid, signal.SIGKILL)
        return started, complete

    def failover(self, kind: str, threads: int = THREADS, think: float = THINK, timeout: float = 5.0,
                 before: float = 1.5, after: float = 6.0) -> Failover:
        """Client load through the virtual IP for `before` seconds, the fault, `after` more seconds of load."""
        assert kind in FAULTS, kind
        holder = self.wait_for_holder()
        cutter = self._link_cutter(holder) if kind == "balancer" else None
        client = self.lan.spawn("client", sys.executable, "-m", "lab.balancer_pair", "load", "--threads",
                                str(threads), "--think", str(think), "--timeout", str(timeout), cwd=REPO,
                                log=self.workdir / "client.log", stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                text=True)
        try:
            ready, _, _ = select.select([client.stdout], [], [], 15)
            line = client.stdout.readline() if ready else ""
            if line.strip() != "READY":
                raise RuntimeError(f"the load client did not reach {VIP}: {line!r}, see {self.workdir / 'client.log'}")
            time.sleep(before)
            fault_times = self.inject(kind, holder, cutter)
            time.sleep(after)
            output, _ = client.communicate(timeout=timeout + 15)  # closes stdin: the client stops
        finally:
            if client.poll() is None:
                client.kill()
                client.wait(timeout=10)
        # The vanished holder still has the address on its (down) interface: only a reachable holder counts.
        holders = [name for name in self.holders() if kind == "haproxy" or name != holder]
        return _analyse(kind, holder, holders, json.loads(output), *fault_times)


def _analyse(fault: str, holder: str, holders_after: list[str], records: dict, started: float,
             complete: float) -> Failover:
    requests = records["requests"]
    in_flight = [r for r in requests if r["start"] < started < r["end"]]
    during = [r for r in requests if started <= r["start"] < complete]
    new = [r for r in requests if r["start"] >= complete]
    answered = [probe["end"] for probe in records["probes"] if probe["ok"] and probe["start"] >= complete]
    return Failover(
        fault=fault, holder_before=holder, holder_after=",".join(holders_after) or "none",
        fault_took=complete - started, vip_back_after=min(answered) - started if answered else None,
        requests=len(requests), in_flight=len(in_flight), failed_in_flight=sum(1 for r in in_flight if r["error"]),
        opened_during_fault=len(during), failed_opened_during_fault=sum(1 for r in during if r["error"]),
        failed_new=[{"start": round(r["start"] - started, 3), "error": r["error"]} for r in new if r["error"]],
        slowest_new=max((r["end"] - r["start"] for r in new), default=0.0))


# --- the load client (run in the client namespace) --------------------------------------------------------

def _request(path: str, timeout: float) -> str:
    """One request on a new connection, read to the end; returns '' or what went wrong."""
    connection = http.client.HTTPConnection(VIP, PORT, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return "" if response.status == 200 else f"HTTP {response.status}"
    except ConnectionRefusedError:
        return "refused"
    except TimeoutError:
        return "timeout"
    except (ConnectionError, http.client.HTTPException) as error:
        return type(error).__name__
    except OSError as error:
        return f"OSError {error.errno}"
    finally:
        connection.close()


def _load(threads: int, think: float, timeout: float) -> None:
    deadline = time.monotonic() + 15
    while _request("/health", 1.0):
        if time.monotonic() > deadline:
            print("the virtual IP did not answer within 15 s", flush=True)
            return
        time.sleep(0.1)
    stop = threading.Event()
    requests, probes = [], []

    def send():
        while not stop.is_set():
            start = time.monotonic()
            error = _request(REQUEST_PATH, timeout)
            requests.append({"start": start, "end": time.monotonic(), "error": error})
            stop.wait(random.uniform(0, think))

    def probe():
        while not stop.is_set():
            start = time.monotonic()
            ok = not _request("/health", 0.1)
            probes.append({"start": start, "end": time.monotonic(), "ok": ok})
            stop.wait(0.02)

    workers = [threading.Thread(target=send) for _ in range(threads)] + [threading.Thread(target=probe)]
    for worker in workers:
        worker.start()
    print("READY", flush=True)
    sys.stdin.read()  # until the lab closes it
    stop.set()
    for worker in workers:
        worker.join()
    print(json.dumps({"requests": requests, "probes": probes}))


# --- the link cutter (run in a balancer's namespace) ------------------------------------------------------

SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
IFREQ = "16sH22x"  # struct ifreq with ifr_flags: the name, the flags, the rest of the 40-byte union


def _cut(interface: str) -> None:
    """Prints READY, waits for a line on stdin, takes the interface down (SIOCSIFFLAGS) and prints DOWN."""
    print("READY", flush=True)
    sys.stdin.readline()
    with socket.socket() as control:
        name = interface.encode()
        flags = struct.unpack(IFREQ, fcntl.ioctl(control, SIOCGIFFLAGS, struct.pack(IFREQ, name, 0)))[1]
        fcntl.ioctl(control, SIOCSIFFLAGS, struct.pack(IFREQ, name, flags & ~IFF_UP))
    print("DOWN", flush=True)
    sys.stdin.read()  # until the lab ends


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    load = commands.add_parser("load", help="the load client (run in the client namespace)")
    load.add_argument("--threads", type=int, default=THREADS)
    load.add_argument("--think", type=float, default=THINK, help="longest pause between two requests of a thread")
    load.add_argument("--timeout", type=float, default=5.0, help="socket timeout of a request")
    cut = commands.add_parser("cut", help="takes an interface down when told (run in a balancer's namespace)")
    cut.add_argument("interface")
    arguments = parser.parse_args()
    if arguments.command == "load":
        _load(arguments.threads, arguments.think, arguments.timeout)
    else:
        _cut(arguments.interface)
