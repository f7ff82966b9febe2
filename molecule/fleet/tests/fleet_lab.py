"""What the fleet scenario's tests share: the lab's hosts and how to reach them."""

from __future__ import annotations

import os
import pathlib
import subprocess

REPO = pathlib.Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", pathlib.Path(__file__).resolve().parents[3]))
EPHEMERAL = pathlib.Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
NODES = ("fleet-gpu-node1", "fleet-gpu-node2", "fleet-gpu-node3")
BALANCER = "fleet-lb1"


def address(container: str) -> str:
    return subprocess.run(["docker", "inspect", "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                           container], check=True, capture_output=True, text=True).stdout.strip()


def node_sh(node: str, script: str) -> str:
    return subprocess.run(["docker", "exec", node, "bash", "-c", script], check=True, capture_output=True,
                          text=True, timeout=60).stdout
