"""What the fleet scenario's tests share: the lab's hosts and how to reach them."""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import threading
import uuid
from typing import Any, Callable

import yaml

REPO = pathlib.Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", pathlib.Path(__file__).resolve().parents[3]))
EPHEMERAL = pathlib.Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
LOG_DIR = REPO / "reports" / "fleet"
# The scenario's GPU nodes (its platforms in group gpu_nodes), in the order molecule.yml lists them.
NODES = tuple(platform["name"] for platform in yaml.safe_load(
    (pathlib.Path(__file__).resolve().parents[1] / "molecule.yml").read_text())["platforms"]
    if "gpu_nodes" in platform.get("groups", []))
BALANCER = "fleet-lb1"
# The vLLM kernel caches, one folder per key (image ID, GPU architecture): roles/vllm_service, "Kernel caches".
KERNEL_CACHE = "/var/lib/vllm/cache"


def address(container: str) -> str:
    return subprocess.run(["docker", "inspect", "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                           container], check=True, capture_output=True, text=True).stdout.strip()


def node_sh(node: str, script: str) -> str:
    return subprocess.run(["docker", "exec", node, "bash", "-c", script], check=True, capture_output=True,
                          text=True, timeout=60).stdout


def current_key(node: str) -> str:
    """The key of the kernel caches the node's vLLM unit mounts."""
    unit = node_sh(node, "cat /etc/systemd/system/vllm.service")
    return re.search(rf"--volume {KERNEL_CACHE}/([0-9a-f]{{12}}-[0-9a-z-]+)/triton:", unit).group(1)


def kernel_cache_marker(node: str, key: str) -> dict:
    """What the node recorded when the key's caches became complete: where they came from."""
    return json.loads(node_sh(node, f"cat {KERNEL_CACHE}/{key}/.complete"))


class BackgroundPlaybook:
    """ansible-playbook against molecule's inventory, running while the test acts on the lab; extra vars go through a
    0600 file, the output straight to LOG_DIR/<log_name>.log (a pipe nobody reads meanwhile could fill and stop it).
    `wait()` returns the finished process with that output."""

    def __init__(self, playbook: pathlib.Path, extra_vars: dict, log_name: str) -> None:
        vars_file = EPHEMERAL / f"extra-vars-{uuid.uuid4().hex}.yml"
        vars_file.touch(mode=0o600)
        vars_file.write_text(yaml.safe_dump(extra_vars))
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.log = LOG_DIR / f"{log_name}.log"
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                ["ansible-playbook", str(playbook), "-i", str(EPHEMERAL / "inventory"), "-e", f"@{vars_file}"],
                cwd=REPO, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, text=True,
                env={**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"})

    def running(self) -> bool:
        return self.process.poll() is None

    def wait(self, timeout: float = 900) -> subprocess.CompletedProcess:
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        return subprocess.CompletedProcess(self.process.args, self.process.returncode, self.log.read_text(), "")


class Sampler:
    """Calls `sample` every half second in a thread while the with-block runs; `samples` holds what it returned."""

    def __init__(self, sample: Callable[[], Any]) -> None:
        self.sample = sample
        self.samples: list = []
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc_info):
        self.stop_event.set()
        self.thread.join(timeout=30)

    def _loop(self) -> None:
        while not self.stop_event.wait(0.5):
            self.samples.append(self.sample())
