"""Benchmark: how site.yml's run time and the controller's CPU time grow with the number of GPU nodes.

For each N (default 1, 2 and 4) it starts N fresh simulated GPU nodes (lab/playbooks/nodes_up.yml, beside the
stand-ins that run; nodes named scale-gpu-node<i>, in a temporary inventory that takes the sandbox's group_vars),
runs `ansible-playbook site.yml` on them twice - the first deployment, then the re-run with nothing to change -
and removes them (lab/playbooks/nodes_down.yml). Each run's wall time and the controller's CPU time (user + sys of
ansible-playbook and every process it waited for: its forks, the docker CLI of the lab's connection, the
controller-side modules) are printed, then a table with the CPU time per node and the ratios to N = 1.

A benchmark, not a test: the numbers depend on the machine and its load. The simulated nodes are containers on the
same machine as the controller, so on a small machine (two cores here) several nodes' module runs, apt and Docker
engines compete with the controller for the CPU: the wall time of N nodes there says more about the machine than
about Ansible. The controller's CPU time per node is the figure that carries over to real servers, where each node
does its own work. About 50 minutes for 1, 2 and 4 nodes on two shared cores (docs/benchmarking.md).

    python3 -m benchmarks.controller_scaling
    python3 -m benchmarks.controller_scaling --nodes 1,4 --reruns 3

(from the repository root, in the project's virtualenv: it runs ansible-playbook from beside this Python, with
the repository's ansible.cfg).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
NODE_PREFIX = "scale-gpu-node"
# The last line of a host in PLAY RECAP: ok=... changed=... failed=...
RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.MULTILINE)


def write_inventory(directory: pathlib.Path, count: int) -> pathlib.Path:
    """An inventory of `count` simulated nodes with the sandbox's settings (the stand-ins' addresses)."""
    (directory / "group_vars").symlink_to(ROOT / "inventories" / "sandbox" / "group_vars")
    hosts = "".join(f"        {NODE_PREFIX}{index}:\n          sim_gpu_count: 8\n" for index in range(1, count + 1))
    (directory / "hosts.yml").write_text(
        "all:\n  children:\n    gpu_nodes:\n      hosts:\n" + hosts
        + "      vars:\n        ansible_connection: community.docker.docker\n"
        "        ansible_python_interpreter: /usr/bin/python3\n")
    return directory


def ansible_playbook(playbook: str, inventory: pathlib.Path, log: pathlib.Path, *args: str) -> dict:
    """Runs a playbook from the repository root; returns its wall time, the CPU time of it and its children,
    its exit code and each host's recap."""
    command = [str(pathlib.Path(sys.executable).parent / "ansible-playbook"), playbook, "-i", str(inventory), *args]
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    before, load_before = resource.getrusage(resource.RUSAGE_CHILDREN), os.getloadavg()[0]
    started = time.monotonic()
    with log.open("w") as output:
        returncode = subprocess.run(command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT,
                                    check=False).returncode
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    recap = {match[1]: {"ok": int(match[2]), "changed": int(match[3]), "unreachable": int(match[4]),
                        "failed": int(match[5])} for match in RECAP.finditer(log.read_text())}
    return {"wall": wall, "cpu": cpu, "load": (load_before, os.getloadavg()[0]), "returncode": returncode,
            "recap": recap, "log": str(log)}


def load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def measure(count: int, reruns: int, workdir: pathlib.Path) -> dict:
    """Brings up `count` nodes, runs site.yml first and `reruns` times again, removes the nodes."""
    directory = workdir / f"n{count}"
    directory.mkdir()
    inventory = write_inventory(directory, count)
    state = ["-e", f"lab_nodes_state_dir={directory / 'state'}"]
    try:
        up = ansible_playbook("lab/playbooks/nodes_up.yml", inventory, directory / "nodes_up.log", *state)
        if up["returncode"] != 0:
            raise RuntimeError(f"{count} node(s) did not start: see {up['log']}")
        print(f"N={count}: nodes up in {up['wall']:.0f} s; load {load()}", flush=True)
        first = ansible_playbook("site.yml", inventory, directory / "first.log")
        print(f"N={count}: first run {first['wall']:.1f} s wall, {first['cpu']:.1f} s CPU, rc {first['returncode']}; "
              f"load {load()}", flush=True)
        if first["returncode"] != 0:
            raise RuntimeError(f"site.yml failed on {count} node(s): see {first['log']}")
        again = []
        for index in range(1, reruns + 1):
            run = ansible_playbook("site.yml", inventory, directory / f"rerun{index}.log")
            changed = sum(host["changed"] for host in run["recap"].values())
            print(f"N={count}: re-run {index}: {run['wall']:.1f} s wall, {run['cpu']:.1f} s CPU, rc "
                  f"{run['returncode']}, {changed} changed; load {load()}", flush=True)
            if run["returncode"] != 0 or changed:
                raise RuntimeError(f"the re-run on {count} node(s) was not a clean no-op: see {run['log']}")
            again.append(run)
        rerun = {key: statistics.median(run[key] for run in again) for key in ("wall", "cpu")}
        rerun["load"] = (again[0]["load"][0], again[-1]["load"][1])
        return {"first": first, "rerun": rerun}
    finally:
        down = ansible_playbook("lab/playbooks/nodes_down.yml", inventory, directory / "nodes_down.log")
        if down["returncode"] != 0:
            print(f"N={count}: removing the nodes failed, see {down['log']}", file=sys.stderr)


def table(results: dict[int, dict]) -> str:
    base = results[min(results)]
    lines = ["| nodes | run | wall (s) | wall ÷ N=1 | controller CPU (s) | CPU per node (s) | CPU ÷ N=1 "
             "| load average |", "|---:|---|---:|---:|---:|---:|---:|---|"]
    for kind, label in (("first", "first"), ("rerun", "re-run")):
        for count, result in sorted(results.items()):
            run, one = result[kind], base[kind]
            lines.append(f"| {count} | {label} | {run['wall']:.1f} | {run['wall'] / one['wall']:.2f} | "
                         f"{run['cpu']:.1f} | {run['cpu'] / count:.1f} | {run['cpu'] / one['cpu']:.2f} | "
                         f"{run['load'][0]:.1f} → {run['load'][1]:.1f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--nodes", default="1,2,4", help="node counts, comma-separated (default 1,2,4)")
    parser.add_argument("--reruns", type=int, default=1, help="re-runs per node count; the median is reported")
    parser.add_argument("--keep-logs", action="store_true", help="keep the playbooks' logs and print where")
    args = parser.parse_args()
    counts = sorted({int(value) for value in args.nodes.split(",")})
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="controller-scaling-"))
    print(f"site.yml on {', '.join(map(str, counts))} simulated node(s), {args.reruns} re-run(s) each; "
          f"{os.cpu_count()} CPUs, load {load()}", flush=True)
    results = {}
    try:
        for count in counts:
            results[count] = measure(count, args.reruns, workdir)
    finally:
        if args.keep_logs:
            print(f"logs: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(table(results))
    print()
    print("Wall times include the nodes' own work on this machine's cores; the controller's CPU per node is the "
          "figure that carries over to real servers.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
