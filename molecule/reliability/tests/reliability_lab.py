"""The reliability suite's tools: run the project's playbooks against the scenario's node and look at the node.

The tests run on the controller (molecule's verify step). They drive the real entry points (`ansible-playbook
site.yml` and the playbooks under playbooks/) with the scenario's inventory, and inspect the simulated node with
`docker exec` (the node is a container of the lab; see lab/).
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import time
import uuid
from dataclasses import dataclass

import yaml

REPO = pathlib.Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", pathlib.Path(__file__).resolve().parents[3]))
EPHEMERAL = pathlib.Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
INVENTORY = EPHEMERAL / "inventory"
NODE = "reliability-gpu-node1"
REPORT_DIR = REPO / "reports" / "reliability"
# Paths that change on a live node whatever Ansible does: kernel and runtime trees, logs, caches, Docker's and
# systemd's state, the service's kernel caches, and Ansible's own temporary files.
VOLATILE_PATHS = ("/proc", "/sys", "/dev", "/run", "/tmp", "/var/tmp", "/var/log", "/var/cache", "/var/lib/docker",
                  "/var/lib/systemd", "/var/lib/vllm/cache", "/root/.ansible", "/root/.ansible_async", "/root/.cache")


@dataclass
class PlaybookRun:
    rc: int
    output: str
    seconds: float


def run_playbook(playbook: str, extra_vars: dict | None = None, *, args: tuple = (), log_name: str | None = None,
                 timeout: float = 1200, env: dict | None = None) -> PlaybookRun:
    """ansible-playbook <playbook> against the scenario's inventory; extra vars go through a 0600 file, never argv."""
    command = ["ansible-playbook", str(REPO / playbook), "-i", str(INVENTORY), *args]
    if extra_vars:
        vars_file = EPHEMERAL / f"extra-vars-{uuid.uuid4().hex}.yml"
        vars_file.touch(mode=0o600)
        vars_file.write_text(yaml.safe_dump(extra_vars))
        command += ["-e", f"@{vars_file}"]
    started = time.monotonic()
    completed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                               env={**os.environ, "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1", **(env or {})})
    output = completed.stdout + completed.stderr
    if log_name:
        REPORT_DIR.joinpath("logs").mkdir(parents=True, exist_ok=True)
        REPORT_DIR.joinpath("logs", f"{log_name}.log").write_text(output)
    return PlaybookRun(completed.returncode, output, time.monotonic() - started)


def node_sh(script: str, *, check: bool = True, timeout: float = 120) -> str:
    """Run a shell script on the node as root; its stdout."""
    completed = subprocess.run(["docker", "exec", NODE, "bash", "-c", script], capture_output=True, text=True,
                               timeout=timeout)
    if check and completed.returncode != 0:
        raise AssertionError(f"on {NODE}: {script!r} exited {completed.returncode}: {completed.stderr.strip()}")
    return completed.stdout


def service_state() -> dict:
    """The vllm unit's identity: its current start (InvocationID), state and container."""
    properties = dict(line.split("=", 1) for line in node_sh(
        "systemctl show vllm -p InvocationID -p ActiveState -p NRestarts").splitlines() if "=" in line)
    properties["container"] = node_sh("docker inspect --format '{{.Id}} {{.Config.Image}}' vllm", check=False).strip()
    return properties


def service_url() -> str:
    """Where clients reach the service, as the vllm_service role recorded it (its local fact)."""
    return json.loads(node_sh("cat /etc/ansible/facts.d/vllm_service.fact"))["url"]


def wait_healthy(timeout: float = 180) -> float:
    """Seconds until the service answers /health 200 at its recorded address (fails after timeout)."""
    started = time.monotonic()
    url = service_url()
    while time.monotonic() - started < timeout:
        code = node_sh(f"curl -s -o /dev/null -w '%{{http_code}}' --max-time 3 {url}/health", check=False).strip()
        if code == "200":
            return time.monotonic() - started
        time.sleep(2)
    raise AssertionError(f"vllm on {NODE} did not answer /health within {timeout} s")


class ChangeWatch:
    """Which files on the node changed between start() and changes(), outside VOLATILE_PATHS."""

    def __init__(self, name: str = "test") -> None:
        self.mark = f"/run/reliability-change-mark-{name}"

    def start(self) -> None:
        node_sh(f"touch {self.mark}")
        self.before = service_state()
        time.sleep(1)  # mtimes have one-second granularity on some file systems

    def changes(self) -> list[str]:
        prune = " -o ".join(f"-path {path}" for path in VOLATILE_PATHS)
        found = node_sh(f"find / \\( {prune} \\) -prune -o -newer {self.mark} -print", check=False)
        return sorted(line for line in found.splitlines() if line and line != "/")

    def service_untouched(self) -> bool:
        after = service_state()
        return after["InvocationID"] == self.before["InvocationID"] and after["container"] == self.before["container"]


