"""Benchmark: the time to put the weights on N nodes whose links have one fixed bandwidth, for three ways of
getting them there, each as a ratio to the ideal (model bytes / one link's bandwidth):

    hub      every node downloads from the hub (model_weights_source: hub)
    seed     the first node downloads from the hub, then serves its snapshot with `python3 -m http.server` and the
             others copy from it (model_weights_source: seed, as the role does it)
    fanout   every node fetches its share from the hub and copies the rest from the others as soon as one has
             verified it, each serving through nginx with the role's configuration (model_weights_source: fanout)

The network: network namespaces on one bridge (lab/netns_lan.py; nothing touches the host's network), one for
the hub stand-in (lab/hf_hub/server.py, --storage xet) and one per node, each behind a veth whose two ends are
shaped with tc tbf to --rate-mbit, so that every node's NIC, and the hub's link to the fleet (the site's internet
link), carry one link's bandwidth each way. The model is synthetic: --shards shards of
about --shard-bytes (a manifest with the stand-in's first shards). Each node runs the project's downloader
(plugins/module_utils/hf_weights.py, hf_fanout.py) in a process of its own; the processes start first and all
begin together, so the times exclude Python's start-up. Caches are in /dev/shm (memory), so disks play no part.

It prints each run, then a table: per N the time of each way and its ratio to the ideal, the fan-out's time as a
ratio to one node's (N = 1, from the hub), and the internet bytes of each way as a multiple of the model. A
benchmark, not a test: numbers depend on the machine (two cores here move 8 x 100 Mbit/s through Python, tbf and
the bridge). Needs root, ip, tc and nginx (scripts/setup-dev-host.sh installs nginx); about 4 minutes.

    sudo .venv/bin/python -m benchmarks.weights_fanout
    sudo .venv/bin/python -m benchmarks.weights_fanout --nodes 1,8 --strategies fanout --rate-mbit 200

(from the repository root: it imports plugins' module_utils, lab and tests.helpers).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import ansible.module_utils

from lab.netns_lan import NetnsLan

ROOT = pathlib.Path(__file__).resolve().parents[1]
# The project's module_utils under the name its modules and the fan-out import them by (as plugins/filter does).
if str(ROOT / "plugins" / "module_utils") not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(str(ROOT / "plugins" / "module_utils"))
from ansible.module_utils import hf_fanout, hf_weights  # noqa: E402  pylint: disable=wrong-import-position

REPO_ID = "deepseek-ai/DeepSeek-V3.2"
SUBNET = "10.205.0"
HUB_ADDRESS = f"{SUBNET}.2"
HUB_PORT, PEER_PORT = 8080, 8090
STRATEGIES = ("hub", "seed", "fanout")
LABELS = {"hub": "every node from the hub", "seed": "single seed (today)", "fanout": "fan-out"}


def node_address(index: int) -> str:
    return f"{SUBNET}.{10 + index}"


def unavailable() -> str:
    """Why the benchmark cannot run here, or an empty string."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, tc)"
    missing = [tool for tool in ("ip", "tc", "nginx") if shutil.which(tool) is None]
    return f"needs {', '.join(missing)} (scripts/setup-dev-host.sh installs nginx)" if missing else ""


# --------------------------------------------------------------------------------------------------------------
# In a node's namespace: the downloader (subcommands `manifest` and `node`)


def fetch_manifest(hub_url: str) -> None:
    settings = hf_weights.TransferSettings()
    manifest = hf_weights.Hub(REPO_ID, endpoint=hub_url, token=None, settings=settings).manifest(
        "main", threading.Event())
    print(json.dumps(manifest.to_dict()))


def run_node(config: dict) -> None:
    """One node's download, started when a line arrives on stdin; prints its times and where its bytes came from."""
    settings = hf_weights.TransferSettings(max_workers=config["workers"], timeout=30, progress_interval=0.5)
    manifest = hf_weights.Manifest.from_dict(json.loads(pathlib.Path(config["manifest"]).read_text()))
    hub = hf_weights.Hub(REPO_ID, endpoint=config["hub"], token=None, settings=settings)
    progress = str(pathlib.Path(config["home"]) / "progress.json")
    if config["strategy"] == "fanout":
        source = hf_fanout.Fanout(hub, config["peers"], config["index"], peer_wait=config["peer_wait"],
                                  poll_interval=config["poll"], timeout=settings.timeout)
        sync = hf_fanout.FanoutSync(config["home"], REPO_ID, "main", source=source, settings=settings, hub=hub,
                                    progress_file=progress)
    else:
        source = hf_weights.PeerHttp(config["seed_url"], settings) if config.get("seed_url") else hub
        sync = hf_weights.SnapshotSync(config["home"], REPO_ID, "main", source=source, settings=settings,
                                       hub=hub if source is hub else None, progress_file=progress)
    print("READY", flush=True)
    sys.stdin.readline()
    started = time.monotonic()
    result = sync.run(manifest)
    print(json.dumps({"start": started, "end": time.monotonic(), "snapshot": result["snapshot_path"],
                      "bytes": result["bytes_downloaded"], "fanout": result.get("fanout")}), flush=True)


# --------------------------------------------------------------------------------------------------------------
# The lab


class Lab:
    """The hub and `nodes` nodes on a LAN of network namespaces (lab/netns_lan.py), every link shaped to
    `rate_mbit` both ways; a context manager that removes all of it (and every process it started) on exit."""

    def __init__(self, workdir: pathlib.Path, nodes: int, rate_mbit: int) -> None:
        self.workdir, self.nodes, self.rate_mbit = workdir, nodes, rate_mbit
        self.lan = NetnsLan(f"wf{os.getpid()}", cwd=ROOT, timeout=120)

    def ns(self, member: str) -> str:
        return self.lan.namespace(member)

    def run(self, member: str, *command: str) -> subprocess.CompletedProcess:
        return self.lan.run(member, *command)

    def __enter__(self) -> Lab:
        try:
            self.lan.start()
            self.lan.add("hub", HUB_ADDRESS, rate_mbit=self.rate_mbit)
            for index in range(self.nodes):
                self.lan.add(f"node{index}", node_address(index), rate_mbit=self.rate_mbit)
        except BaseException:
            self.lan.close()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.lan.close()

    def spawn(self, member: str, *command: str, log: str, **popen) -> subprocess.Popen:
        """The command in the member's namespace, its output (what `popen` does not redirect) in workdir/`log`."""
        return self.lan.spawn(member, *command, log=self.workdir / log, text=True, **popen)

    def python(self, member: str, code: str) -> str:
        return self.run(member, sys.executable, "-c", code).stdout

    def wait_listening(self, member: str, address: str, port: int, timeout: float = 20) -> None:
        self.python(member, f"""
import socket, time
deadline = time.monotonic() + {timeout}
while True:
    try:
        socket.create_connection(({address!r}, {port}), 1).close()
        break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.05)
""")


def read_line(process: subprocess.Popen, timeout: float, what: str) -> str:
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    line = process.stdout.readline() if ready else ""
    if not line:
        raise RuntimeError(f"{what}: no answer within {timeout:.0f} s (exit status {process.poll()})")
    return line


class Bench:
    def __init__(self, lab: Lab, args, manifest_path: pathlib.Path, model_bytes: int, paths: set[str]) -> None:
        self.lab, self.args, self.manifest_path = lab, args, manifest_path
        self.model_bytes, self.paths = model_bytes, paths
        self.hub_url = f"http://{HUB_ADDRESS}:{HUB_PORT}"

    def home(self, index: int) -> pathlib.Path:
        return self.lab.workdir / "homes" / f"node{index}"

    def hub_control(self, method: str, name: str) -> dict:
        code = (f"import json, urllib.request; print(urllib.request.urlopen(urllib.request.Request("
                f"'{self.hub_url}/_sim/{name}', method='{method}'), timeout=10).read().decode())")
        return json.loads(self.lab.python("hub", code) or "{}")

    def internet_bytes(self) -> int:
        files = self.hub_control("GET", "stats")["files"]
        return sum(counters.get("bytes_sent", 0) for path, counters in files.items() if path in self.paths)

    def start_nodes(self, indexes, strategy: str, **extra) -> list[subprocess.Popen]:
        processes = []
        for index in indexes:
            home = self.home(index)
            home.mkdir(parents=True, exist_ok=True)
            config = {"strategy": strategy, "hub": self.hub_url, "home": str(home), "index": index,
                      "manifest": str(self.manifest_path), "workers": self.args.workers, "poll": self.args.poll,
                      "peer_wait": self.args.peer_wait, **extra}
            process = self.lab.spawn(f"node{index}", sys.executable, "-m", "benchmarks.weights_fanout", "node",
                                     json.dumps(config),
                                     log=f"node{index}.log", stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            processes.append(process)
        for process in processes:
            if read_line(process, 60, "a node process").strip() != "READY":
                raise RuntimeError("a node process did not start")
        return processes

    @staticmethod
    def go(processes) -> None:
        for process in processes:
            process.stdin.write("go\n")
            process.stdin.flush()

    @staticmethod
    def results(processes, timeout: float) -> list[dict]:
        done = []
        for process in processes:
            done.append(json.loads(read_line(process, timeout, "a node's download")))
            process.stdin.close()
            process.wait(timeout=30)
        return done

    def run(self, strategy: str, nodes: int) -> dict:
        shutil.rmtree(self.lab.workdir / "homes", ignore_errors=True)
        self.hub_control("DELETE", "stats")
        timeout = 30 + 6 * nodes * self.model_bytes / (self.args.rate_mbit * 1e6 / 8)
        servers = []
        try:
            if strategy == "hub" or nodes == 1:
                processes = self.start_nodes(range(nodes), "hub")
                self.go(processes)
                results = self.results(processes, timeout)
                start, end = min(r["start"] for r in results), max(r["end"] for r in results)
            elif strategy == "seed":
                copiers = self.start_nodes(range(1, nodes), "seed",
                                           seed_url=f"http://{node_address(0)}:{PEER_PORT}/")
                seed = self.start_nodes([0], "hub")
                self.go(seed)
                seeded = self.results(seed, timeout)[0]
                # What the role does next: serve the finished snapshot with Python's http.server, then copy.
                server = self.lab.spawn("node0", sys.executable, "-m", "http.server", "--bind", node_address(0),
                                        "--directory", seeded["snapshot"], str(PEER_PORT), log="seed-server.log")
                servers.append(server)
                self.lab.wait_listening("node1", node_address(0), PEER_PORT)
                self.go(copiers)
                results = [seeded, *self.results(copiers, timeout)]
                start, end = seeded["start"], max(r["end"] for r in results)
            else:
                from lab.weights_peer import PeerServer
                from tests.helpers.role_renderer import RoleRenderer

                urls = []
                for index in range(nodes):
                    home = self.home(index)
                    home.mkdir(parents=True, exist_ok=True)
                    peer = PeerServer(RoleRenderer, self.lab.workdir / "peers" / f"node{index}", home,
                                      home / "progress.json", address=node_address(index), port=PEER_PORT,
                                      allowed=[node_address(other) for other in range(nodes)],
                                      netns=self.lab.ns(f"node{index}"))
                    servers.append(peer.start())
                    urls.append(peer.url)
                processes = self.start_nodes(range(nodes), "fanout", peers=urls)
                self.go(processes)
                results = self.results(processes, timeout)
                start, end = min(r["start"] for r in results), max(r["end"] for r in results)
        finally:
            for server in servers:
                if isinstance(server, subprocess.Popen):
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(server.pid, signal.SIGKILL)
                    server.wait(timeout=10)
                else:
                    server.kill()
        ideal = self.model_bytes / (self.args.rate_mbit * 1e6 / 8)
        fallbacks = sum(len((r.get("fanout") or {}).get("hub_fallbacks", [])) for r in results)
        return {"strategy": strategy, "nodes": nodes, "seconds": end - start, "ratio": (end - start) / ideal,
                "internet": self.internet_bytes() / self.model_bytes, "hub_fallbacks": fallbacks}


# --------------------------------------------------------------------------------------------------------------
# The table


def cell(run: dict | None) -> str:
    return "-" if run is None else f"{run['seconds']:.1f} s = {run['ratio']:.2f}×"


def table(runs: list[dict], nodes: list[int], strategies: list[str]) -> str:
    by = {(run["strategy"], run["nodes"]): run for run in runs}
    one = by.get(("hub", 1)) or by.get(("fanout", 1))
    header = ["N", *(LABELS[strategy] for strategy in strategies)]
    if "fanout" in strategies and one:
        header.append("fan-out ÷ one node")
    header.append("internet bytes ÷ model (" + " / ".join(strategies) + ")")
    lines = ["| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
    for count in nodes:
        row = [str(count), *(cell(by.get((strategy, count))) for strategy in strategies)]
        if "fanout" in strategies and one:
            fanout = by.get(("fanout", count))
            row.append(f"{fanout['seconds'] / one['seconds']:.2f}" if fanout else "-")
        row.append(" / ".join(f"{by[(strategy, count)]['internet']:.2f}" if (strategy, count) in by else "-"
                              for strategy in strategies))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "node":
        run_node(json.loads(sys.argv[2]))
        return 0
    if len(sys.argv) > 2 and sys.argv[1] == "manifest":
        fetch_manifest(sys.argv[2])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", default="1,2,4,8", help="comma-separated node counts (default 1,2,4,8)")
    parser.add_argument("--strategies", default=",".join(STRATEGIES), help=f"of {', '.join(STRATEGIES)}")
    parser.add_argument("--rate-mbit", type=int, default=100, help="every link's bandwidth, Mbit/s (default 100)")
    parser.add_argument("--shards", type=int, default=48, help="shards of the synthetic model (default 48)")
    parser.add_argument("--shard-bytes", type=int, default=1_500_000, help="about this many bytes each (1.5 MB)")
    parser.add_argument("--workers", type=int, default=8, help="model_weights_max_workers (default 8)")
    parser.add_argument("--poll", type=float, default=0.1,
                        help="the fan-out's peer poll interval, s (default 0.1: the role's 1 s, scaled down with "
                             "the shards)")
    parser.add_argument("--peer-wait", type=float, default=30, help="the fan-out's peer_wait, s (default 30)")
    args = parser.parse_args()
    reason = unavailable()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 1
    nodes = sorted(int(count) for count in args.nodes.split(","))
    strategies = [strategy for strategy in STRATEGIES if strategy in args.strategies.split(",")]
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="weights-fanout-", dir="/dev/shm"))
    runs: list[dict] = []
    try:
        with Lab(workdir, max(nodes), args.rate_mbit) as lab:
            hub = lab.spawn("hub", sys.executable, str(ROOT / "lab" / "hf_hub" / "server.py"), "--host",
                            HUB_ADDRESS, "--port", str(HUB_PORT), "--cdn-port", "8081", "--bridge-port", "8082",
                            "--shard-bytes", str(args.shard_bytes), "--storage", "xet", log="hub.log",
                            stdout=subprocess.PIPE)
            if not read_line(hub, 30, "the hub stand-in").startswith("READY"):
                raise RuntimeError("the hub stand-in did not start")
            full = json.loads(lab.run("node0", sys.executable, "-m", "benchmarks.weights_fanout", "manifest",
                                      f"http://{HUB_ADDRESS}:{HUB_PORT}").stdout)
            shards = [entry for entry in full["files"] if entry["path"].startswith("model-0")][:args.shards]
            manifest_path = workdir / "manifest.json"
            manifest_path.write_text(json.dumps({**full, "files": shards}))
            model_bytes = sum(entry["size"] for entry in shards)
            ideal = model_bytes / (args.rate_mbit * 1e6 / 8)
            print(f"model: {len(shards)} shards, {model_bytes / 1e6:.1f} MB; links {args.rate_mbit} Mbit/s; ideal "
                  f"(model bytes / one link) {ideal:.2f} s; {args.workers} workers, fan-out poll {args.poll} s; "
                  f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}", flush=True)
            bench = Bench(lab, args, manifest_path, model_bytes, {entry["path"] for entry in shards})
            for count in nodes:
                for strategy in strategies:
                    run = bench.run(strategy, count)
                    runs.append(run)
                    print(f"N={count} {strategy:<6} {run['seconds']:6.1f} s  {run['ratio']:5.2f}× ideal  internet "
                          f"{run['internet']:.2f}× model" + (f", {run['hub_fallbacks']} hub fallbacks"
                                                              if run["hub_fallbacks"] else ""), flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}\n")
    print(table(runs, nodes, strategies))
    return 0


if __name__ == "__main__":
    sys.exit(main())
