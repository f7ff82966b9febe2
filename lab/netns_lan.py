"""A LAN of network namespaces on one bridge, for the labs and benchmarks that need machines on a network
(lab/balancer_pair.py, benchmarks/weights_fanout.py). Nothing touches the host's network.

A switch namespace holds the bridge br0. Each member gets a namespace of its own with loopback up and an `eth0` at
the address it is given: one end of a veth pair whose other end, in the switch and enslaved to br0, is named after
the member (so a member's name must be a valid interface name: at most 15 characters). With `rate_mbit`, both ends
of the member's cable are shaped with tc tbf (burst 256 kB, latency 50 ms): its uploads leave through its eth0, its
downloads through the switch's end, so the member's link carries that rate each way.

Namespaces are named `<name>-<member>`: the caller picks a name unique to its run (its process id, and a counter
where one process builds several LANs) and short enough to tell whose namespaces they are.

    with NetnsLan(f"demo{os.getpid()}") as lan:
        lan.add("a", "10.209.0.2")
        lan.add("b", "10.209.0.3", rate_mbit=100)
        lan.spawn("b", "python3", "-m", "http.server", "--bind", "10.209.0.3", "8000", log=workdir / "b.log")
        lan.run("a", "curl", "-s", "--retry", "5", "--retry-connrefused", "http://10.209.0.3:8000/")

`close()` (on leaving the `with`, also when a step of the set-up failed) kills the processes `spawn` started, then
whatever else still runs in the namespaces, and deletes the namespaces, the switch's last.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import signal
import subprocess

SWITCH, BRIDGE = "switch", "br0"
# tc tbf's bucket size and the longest a packet may wait in its queue before it is dropped, whatever the rate.
TBF_BURST, TBF_LATENCY = "256kb", "50ms"


class NetnsLan:
    """The switch and its members; a context manager that removes them all (and what runs in them) on exit."""

    def __init__(self, name: str, *, prefix_length: int = 24, cwd: pathlib.Path | None = None,
                 timeout: float = 30) -> None:
        """`prefix_length` is the members' network's; `cwd` and `timeout` (seconds) are those of `run` and
        `spawn`."""
        self.name, self.prefix_length, self.cwd, self.timeout = name, prefix_length, cwd, timeout
        self.namespaces: list[str] = []
        self.processes: list[subprocess.Popen] = []

    def __enter__(self) -> NetnsLan:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc_info) -> None:
        self.close()

    def start(self) -> NetnsLan:
        """The switch's namespace and its bridge (what `with` does on entry; without `with`, call `close`
        afterwards, also when this fails)."""
        self._add_namespace(SWITCH)
        self.run(SWITCH, "ip", "link", "add", BRIDGE, "type", "bridge")
        self.run(SWITCH, "ip", "link", "set", BRIDGE, "up")
        return self

    def namespace(self, member: str) -> str:
        return f"{self.name}-{member}"

    def run(self, member: str, *command: str, check: bool = True,
            timeout: float | None = None) -> subprocess.CompletedProcess:
        """The command in the member's namespace, to its end; raises RuntimeError with its stderr if it fails and
        `check` is true."""
        result = subprocess.run(["ip", "netns", "exec", self.namespace(member), *command], capture_output=True,
                                text=True, timeout=timeout or self.timeout, cwd=self.cwd)
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} in {member}: {result.stderr.strip()}")
        return result

    def spawn(self, member: str, *command: str, log: pathlib.Path | None = None, **popen) -> subprocess.Popen:
        """The command in the member's namespace, in a session (process group) of its own that `close` kills.
        With `log`, its stdout and stderr are appended to that file unless `popen` (subprocess.Popen's keyword
        arguments) sends them elsewhere."""
        handle = log.open("ab") if log else None
        try:
            process = subprocess.Popen(["ip", "netns", "exec", self.namespace(member), *command],
                                       **{"stdout": handle, "stderr": handle, "cwd": self.cwd, **popen},
                                       start_new_session=True)
        finally:
            if handle:
                handle.close()
        self.processes.append(process)
        return process

    def add(self, member: str, address: str, *, rate_mbit: int | None = None) -> None:
        """The member's namespace, its eth0 at `address` on the bridge, and with `rate_mbit` its link shaped to
        that many Mbit/s each way."""
        self._add_namespace(member)
        # `name` and `dev` spelled out: ip takes a bare word that begins a keyword (a, ad, add...) as the keyword.
        self.run(SWITCH, "ip", "link", "add", "name", member, "type", "veth", "peer", "name", "eth0", "netns",
                 self.namespace(member))
        self.run(SWITCH, "ip", "link", "set", "dev", member, "master", BRIDGE, "up")
        self.run(member, "ip", "address", "add", f"{address}/{self.prefix_length}", "dev", "eth0")
        self.run(member, "ip", "link", "set", "eth0", "up")
        if rate_mbit:
            for where, device in ((member, "eth0"), (SWITCH, member)):
                self.run(where, "tc", "qdisc", "add", "dev", device, "root", "tbf", "rate", f"{rate_mbit}mbit",
                         "burst", TBF_BURST, "latency", TBF_LATENCY)

    def _add_namespace(self, member: str) -> None:
        subprocess.run(["ip", "netns", "add", self.namespace(member)], check=True, capture_output=True, timeout=10)
        self.namespaces.append(self.namespace(member))
        self.run(member, "ip", "link", "set", "lo", "up")

    def close(self) -> None:
        """Kills the process group of every process `spawn` started (SIGKILL) and reaps them, kills what else
        still runs in the namespaces, and deletes the namespaces. Never raises for what is already gone; safe to
        call again."""
        try:
            for process in self.processes:
                if process.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=10)
        finally:
            for namespace in reversed(self.namespaces):
                with contextlib.suppress(OSError, subprocess.SubprocessError):
                    _kill_everything_in(namespace)
                with contextlib.suppress(OSError, subprocess.SubprocessError):
                    subprocess.run(["ip", "netns", "delete", namespace], capture_output=True, timeout=30)
            self.namespaces.clear()
            self.processes.clear()


def _kill_everything_in(namespace: str) -> None:
    """What still runs in the namespace (started by a caller's own Popen, or a daemon's children): a namespace
    with processes in it outlives `ip netns delete`, and so would their addresses and ports."""
    pids = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True, timeout=10).stdout
    for pid in pids.split():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)
