"""The Python locks (scripts/locks.sh writes them; `make lint` checks they match their .in files): every package
hashed, and the client the tests run is the client the nodes run."""

import pathlib
import re

import pytest
from ansible.module_utils import hf_weights  # plugins/module_utils/, through tests/unit/conftest.py
from packaging.markers import Marker

REPO = pathlib.Path(__file__).resolve().parents[2]
PROJECT_LOCK = REPO / "requirements.txt"
NODE_LOCK = REPO / "roles" / "model_weights" / "files" / "requirements.txt"
# A locked requirement: `name==version ; markers \`, its hashes on the continuation lines that follow.
REQUIREMENT = re.compile(r"^(?P<name>[a-z0-9-]+)==(?P<version>\S+)(?: ; (?P<marker>[^\\]+?))? \\$")
HASH = re.compile(r"^    --hash=sha256:[0-9a-f]{64}(?: \\)?$")


def locked(lock: pathlib.Path) -> list[dict]:
    """Every requirement of a lock with its marker and the number of hashes under it."""
    entries: list[dict] = []
    for line in lock.read_text().splitlines():
        if match := REQUIREMENT.match(line):
            entries.append({**match.groupdict(), "hashes": 0})
        elif HASH.match(line):
            entries[-1]["hashes"] += 1
    return entries


def versions_on(lock: pathlib.Path, python: str) -> dict[str, str]:
    """name -> version that pip installs from the lock on Linux x86_64 with this Python."""
    environment = {"python_full_version": python, "python_version": python.rsplit(".", 1)[0],
                   "sys_platform": "linux", "platform_machine": "x86_64", "implementation_name": "cpython"}
    return {entry["name"]: entry["version"] for entry in locked(lock)
            if entry["marker"] is None or Marker(entry["marker"]).evaluate(environment)}


@pytest.mark.parametrize("lock", [PROJECT_LOCK, NODE_LOCK], ids=["project", "node"])
def test_every_locked_package_carries_hashes(lock):
    entries = locked(lock)
    assert len(entries) > 10
    assert [entry["name"] for entry in entries if entry["hashes"] == 0] == []


def test_nodes_run_what_the_tests_run():
    """On Debian 12's Python 3.11 (the lab's nodes), the node lock installs exactly the versions the project's
    venv has: the unit tests exercise the downloader with the client and the dependencies the nodes get."""
    node, project = versions_on(NODE_LOCK, "3.11.2"), versions_on(PROJECT_LOCK, "3.11.2")
    assert node["huggingface-hub"] == hf_weights.TESTED_HUGGINGFACE_HUB and "hf-xet" in node
    assert {name: project.get(name) for name in node} == node
