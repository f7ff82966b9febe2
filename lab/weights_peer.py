"""The model_weights role's fan-out peer server, run outside systemd: Debian's nginx with the configuration the role
renders (roles/model_weights/templates/model-weights-peer.conf.j2), for the unit tests and the fan-out benchmark.

Only what the unit provides on a node is supplied differently: the prefix (the unit's runtime directory) is a
directory of the caller's, the access log goes to a file there instead of the journal, and when the caller is root
the workers stay root (on a node the unit's dynamic user reads the world-readable cache; here the served
directories are pytest's or the benchmark's, readable by their owner only). `extra_http` adds directives to the
`http` block (a test slows the server down with `limit_rate`). In a network namespace when `netns` is given.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import signal
import socket
import subprocess
import time

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
TEMPLATE = "model-weights-peer.conf.j2"


def unavailable() -> str:
    """Why a peer server cannot run here, or an empty string."""
    return "" if NGINX else "needs nginx (apt-get install nginx; scripts/setup-dev-host.sh installs it)"


def render_config(renderer_class, *, address: str, port: int, allowed: list[str], hf_home: pathlib.Path,
                  progress_file: pathlib.Path, access_log: pathlib.Path, extra_http: str = "") -> str:
    """The role's nginx configuration for one node, with the node's paths."""
    renderer = renderer_class("model_weights", {}, overrides={
        "model_weights_hf_home": str(hf_home),
        "model_weights_peer_address": address,
        "model_weights_peer_port": port,
        "_model_weights_peer_allowed": allowed,
        "_model_weights_progress_file": str(progress_file),
        "_model_weights_peer_access_log": str(access_log),
    })
    config = renderer.template(TEMPLATE)
    if extra_http:
        config = config.replace("\nhttp {\n", "\nhttp {\n  " + extra_http + "\n", 1)
    return config


def free_port(address: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((address, 0))
        return probe.getsockname()[1]


class PeerServer:
    """nginx serving one node's cache under `hf_home` with the role's configuration; start() waits until it
    answers. `stop()` ends it (SIGTERM), `kill()` makes it vanish at once (SIGKILL to master and workers)."""

    def __init__(self, renderer_class, workdir: pathlib.Path, hf_home: pathlib.Path, progress_file: pathlib.Path,
                 *, address: str = "127.0.0.1", port: int | None = None, allowed: list[str] | None = None,
                 extra_http: str = "", netns: str | None = None) -> None:
        self.workdir, self.address, self.netns = workdir, address, netns
        self.port = port or free_port(address)
        self.url = f"http://{address}:{self.port}/"
        workdir.mkdir(parents=True, exist_ok=True)
        self.access_log = workdir / "access.log"
        self.config = workdir / "nginx.conf"
        self.config.write_text(render_config(renderer_class, address=address, port=self.port,
                                             allowed=allowed or [address], hf_home=hf_home,
                                             progress_file=progress_file, access_log=self.access_log,
                                             extra_http=extra_http))
        self.process: subprocess.Popen | None = None

    def command(self, *extra: str) -> list[str]:
        argv = [NGINX, "-p", f"{self.workdir}/", "-c", str(self.config), *extra]
        if os.geteuid() == 0:
            argv += ["-g", "user root root;"]
        return ["ip", "netns", "exec", self.netns, *argv] if self.netns else argv

    def test(self) -> subprocess.CompletedProcess:
        """nginx -t, as the role's `validate` runs it."""
        return subprocess.run(self.command("-t", "-q"), capture_output=True, text=True, timeout=30)

    def start(self, timeout: float = 10.0) -> PeerServer:
        log = (self.workdir / "nginx.log").open("ab")
        self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx did not start: {(self.workdir / 'nginx.log').read_text()}")
            if self._answers():
                return self
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"nginx does not answer on {self.url}")
            time.sleep(0.05)

    def _answers(self) -> bool:
        if self.netns:
            probe = ["ip", "netns", "exec", self.netns, "python3", "-c",
                     f"import socket; socket.create_connection(({self.address!r}, {self.port}), 1).close()"]
            return subprocess.run(probe, capture_output=True, timeout=10).returncode == 0
        try:
            socket.create_connection((self.address, self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def _signal(self, number: int) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, number)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def log_lines(self) -> list[str]:
        return self.access_log.read_text().splitlines() if self.access_log.exists() else []
