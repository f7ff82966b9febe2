"""The fleet fan-out (module_utils/hf_fanout.py, hf_model_snapshot with source=fanout) with real HTTP: the hub
stand-in (lab/hf_hub/) as the hub, and for every node Debian's nginx with the model_weights role's rendered peer
configuration (lab/weights_peer.py), on loopback, serving the node's cache.

Nodes run in threads of the test process, each with its own cache and progress file, as the role runs one job per
node at once. Hub bytes are counted by the stand-in (/_sim/stats), peer bytes by the nodes' reports and the peers'
access logs.
"""

import hashlib
import json
import pathlib
import re
import shlex
import shutil
import socket
import subprocess
import threading
import time

import pytest
import requests
import yaml
from ansible.module_utils import hf_fanout as fo  # plugins/module_utils/, through tests/unit/conftest.py
from ansible.module_utils import hf_weights as hw

from lab.hf_hub.hub_process import HubProcess
from lab.weights_peer import PeerServer, render_config, unavailable
from tests.helpers import module_runner

REPO = pathlib.Path(__file__).resolve().parents[3]
REPO_ID = "deepseek-ai/DeepSeek-V3.2"
STORAGE = "hub/models--deepseek-ai--DeepSeek-V3.2"

pytestmark = pytest.mark.skipif(bool(unavailable()), reason=unavailable() or "-")

# Progress every 0.2 s: a live node's progress file changes well within the tests' peer_wait.
FAST = hw.TransferSettings(max_workers=8, timeout=5, retries=4, retry_delay=0.05, retry_max_delay=0.2,
                           retry_max_time=30, progress_interval=0.2, lock_timeout=10)
POLL = 0.1


# Hub, a complete cache to copy, peer servers ----------------------------------------------------------------


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory):
    # 256 KiB shards (163 of them, 43 MB in all): big enough that copies are in flight when a peer is killed.
    server = HubProcess(["--shard-bytes", "262144", "--storage", "xet"], tmp_path_factory.mktemp("hub") / "hub.log")
    yield server
    server.stop()


@pytest.fixture
def hub(stand_in):
    stand_in.reset()
    yield stand_in
    stand_in.reset()


def client(hub: HubProcess) -> hw.Hub:
    return hw.Hub(REPO_ID, endpoint=hub.url, token=None, settings=FAST)


@pytest.fixture(scope="module")
def complete(stand_in, tmp_path_factory):
    """One complete download of main (the manifest and a cache that tests copy to make nodes that hold it)."""
    home = tmp_path_factory.mktemp("complete")
    hub_client = client(stand_in)
    result = hw.SnapshotSync(str(home), REPO_ID, "main", source=hub_client, settings=FAST, hub=hub_client).run()
    return home, hw.Manifest.from_dict(result["manifest"])


def holding(complete, home: pathlib.Path) -> pathlib.Path:
    shutil.copytree(complete[0] / "hub", home / "hub", symlinks=True)
    return home


@pytest.fixture
def peers(role_renderer, tmp_path):
    """peers(home, **options): a started peer server for the node whose cache is `home`; all stopped afterwards."""
    started = []

    def start(home: pathlib.Path, *, run: bool = True, **options) -> PeerServer:
        server = PeerServer(role_renderer, tmp_path / f"peer{len(started)}", home, home / "progress.json", **options)
        started.append(server)
        return server.start() if run else server

    yield start
    for server in started:
        server.kill()


class Node(threading.Thread):
    """One node's fan-out download in a thread: `result` or `error` once joined. Nodes a test leaves running are
    stopped when it ends (the `stop_nodes` fixture), so they cannot add to the next test's hub counters."""

    running: list["Node"] = []

    def __init__(self, hub: HubProcess, home: pathlib.Path, urls: list[str], index: int, manifest: hw.Manifest,
                 **options) -> None:
        super().__init__(name=f"node{index}", daemon=True)
        self.hub, self.home, self.manifest = hub, home, manifest
        options.setdefault("peer_wait", 30.0)
        options.setdefault("poll_interval", POLL)
        self.source = fo.Fanout(client(hub), urls, index, timeout=FAST.timeout, **options)
        self.sync = fo.FanoutSync(str(home), REPO_ID, "main", source=self.source, settings=FAST,
                                  hub=self.source.hub, progress_file=str(home / "progress.json"))
        self.result: dict | None = None
        self.error: BaseException | None = None
        self.elapsed = 0.0
        Node.running.append(self)

    def run(self) -> None:
        started = time.monotonic()
        try:
            self.result = self.sync.run(self.manifest)
        except BaseException as error:  # noqa: BLE001 - reported by the test
            self.error = error
        self.elapsed = time.monotonic() - started

    def finish(self, timeout: float = 60) -> dict:
        self.join(timeout)
        assert not self.is_alive(), f"{self.name} still running after {timeout} s"
        assert self.error is None, f"{self.name}: {self.error!r}"
        return self.result


@pytest.fixture(autouse=True)
def stop_nodes():
    yield
    while Node.running:
        node = Node.running.pop()
        node.sync.abort.set()
        node.join(30)


def verified(home: pathlib.Path, manifest: hw.Manifest) -> None:
    """Every file of the snapshot has the manifest's hash."""
    for item in manifest.files:
        data = (home / STORAGE / "snapshots" / manifest.commit / item.path).read_bytes()
        digest = hashlib.sha256(data).hexdigest() if item.sha256 else \
            hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        assert digest == item.etag, item.path


def hub_bytes(hub: HubProcess) -> dict[str, int]:
    """Bytes the hub sent per file (content requests, on the hub or its Xet bridge)."""
    return {path: counters.get("bytes_sent", 0) for path, counters in hub.stats()["files"].items()
            if counters.get("bytes_sent")}


def sizes(manifest: hw.Manifest, paths) -> int:
    return sum(item.size for item in manifest.files if item.path in set(paths))


# Who fetches what ------------------------------------------------------------------------------------------------


def test_owners_take_turns_over_the_manifest_and_holders_keep_what_they_hold(complete):
    manifest = complete[1]
    blobs = fo.unique_blobs(manifest)
    owners = fo.assign_owners(manifest, 3)
    assert owners == fo.assign_owners(manifest, 3), "the same on every node"
    assert [owners[item.etag] for item in blobs] == [position % 3 for position in range(len(blobs))]
    shard = next(item for item in blobs if item.path.startswith("model-00007"))
    wrong = next(item for item in blobs if item.path.startswith("model-00008"))
    held = [{}, {shard.etag: shard.size, wrong.etag: wrong.size - 1}, {shard.etag: shard.size}]
    owners = fo.assign_owners(manifest, 3, held)
    assert owners[shard.etag] in (1, 2), "a holder brings it in, from its disk"
    rest = [owners[item.etag] for item in blobs if item.etag != shard.etag]
    assert rest == [position % 3 for position in range(len(rest))], "the others in turn, a wrong size held by none"
    assert all(abs(rest.count(node) - len(rest) / 3) < 1 for node in range(3))


def test_the_role_orders_the_nodes_and_plans_from_their_disk_checks(role_renderer, complete):
    """vars/main.yml on the controller: the play's nodes sorted, each node's index and peer URL, owners from the
    disk checks' listings (plugins/filter/model_weights.py), and whether the peer servers need to run."""
    manifest = complete[1]
    shard = next(item for item in manifest.files if item.sha256)
    everything = [f"{item.etag} {item.size}" for item in fo.unique_blobs(manifest)]
    listings = {"gpu-b": ["1000 /srv"] + everything, "gpu-c": ["1000 /srv", f"{shard.etag} {shard.size}", "junk"]}
    hostvars = {host: {"__model_weights_peer": {"address": address, "url": f"http://{address}:8090/"},
                       **({"__model_weights_disk": {"stdout_lines": listings[host]}} if host in listings else {})}
                for host, address in (("gpu-a", "10.0.0.1"), ("gpu-b", "10.0.0.2"), ("gpu-c", "10.0.0.3"))}

    def renderer(**overrides):
        return role_renderer("model_weights", {}, overrides={
            "ansible_play_hosts": ["gpu-c", "gpu-a", "gpu-b"], "inventory_hostname": "gpu-c", "hostvars": hostvars,
            "__model_weights_plan": {"manifest": manifest.to_dict()}, **overrides})

    plan = renderer()
    assert plan.var("_model_weights_peer_urls") == [f"http://10.0.0.{index}:8090/" for index in (1, 2, 3)]
    assert plan.var("_model_weights_peer_index") == 2
    assert plan.var("_model_weights_peer_allowed") == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    fanout = plan.var("_model_weights_fanout")
    assert fanout["bytes_needed"] == [hw.bytes_needed_given(manifest, {}), 0,
                                      hw.bytes_needed_given(manifest, {shard.etag: shard.size})]
    assert set(fanout["owners"].values()) <= {1, 2}, "whatever a node holds is not fetched from the hub again"
    assert plan.var("_model_weights_fanout_serve") is True
    assert renderer(ansible_play_hosts=["gpu-b"], inventory_hostname="gpu-b").var("_model_weights_fanout_serve") \
        is False, "nothing to share"


# The fan-out -----------------------------------------------------------------------------------------------------


def test_three_nodes_take_every_file_from_the_hub_once_and_copy_the_rest(hub, complete, peers, tmp_path):
    manifest = complete[1]
    homes = [tmp_path / f"node{index}" for index in range(3)]
    urls = [peers(home).url for home in homes]
    nodes = [Node(hub, home, urls, index, manifest) for index, home in enumerate(homes)]
    for node in nodes:
        node.start()
    results = [node.finish() for node in nodes]
    assert hub_bytes(hub) == {item.path: item.size for item in manifest.files}, "each file once from the hub"
    owners = fo.assign_owners(manifest, 3)
    for index, (home, result) in enumerate(zip(homes, results)):
        verified(home, manifest)
        report = result["fanout"]
        own = [item.path for item in fo.unique_blobs(manifest) if owners[item.etag] == index]
        assert report["bytes_from_hub"] == sizes(manifest, own)
        assert report["bytes_from_hub"] + report["bytes_from_peers"] == manifest.bytes_total
        assert all(report["bytes_by_peer"][url] > 0 for url in urls if url != urls[index]), "copied from both"
        assert not report["hub_fallbacks"] and not report["rejected"]
    again = Node(hub, homes[0], urls, 0, manifest)
    again.start()
    assert not again.finish()["changed"], "a node with the verified snapshot does nothing"


def test_a_copy_cut_by_a_dying_peer_resumes_with_a_range_request_to_another(hub, complete, peers, tmp_path):
    manifest = complete[1]
    slow = peers(holding(complete, tmp_path / "a"), extra_http="limit_rate 64k;")
    spare = peers(holding(complete, tmp_path / "c"), run=False)
    home = tmp_path / "b"
    urls = [slow.url, peers(home).url, spare.url]
    node = Node(hub, home, urls, 1, manifest, owners={item.etag: 0 for item in manifest.files})
    node.start()
    blobs = home / STORAGE / "blobs"
    deadline = time.monotonic() + 20
    while not any(path.name.endswith(".incomplete") and path.stat().st_size > 0 for path in blobs.glob("*")
                  if path.exists()):
        assert time.monotonic() < deadline and node.is_alive(), "no copy started"
        time.sleep(0.01)
    time.sleep(1)
    spare.start()
    slow.kill()
    report = node.finish()["fanout"]
    verified(home, manifest)
    assert hub_bytes(hub) == {}, "nothing from the hub: another peer had every file"
    assert report["bytes_by_peer"][slow.url] > 0 and report["bytes_by_peer"][spare.url] > 0
    assert report["bytes_from_peers"] == manifest.bytes_total, "no byte fetched twice"
    resumed = [line for line in spare.log_lines() if re.search(r'" 206 \d+ range="bytes=[1-9]\d*-"', line)]
    assert resumed, "the spare peer continued at least one cut copy from its offset"


def test_a_silent_owners_share_comes_from_the_hub_through_the_next_node_once(hub, complete, peers, tmp_path):
    manifest = complete[1]
    homes = [tmp_path / "b", tmp_path / "c"]
    dead = peers(tmp_path / "a", run=False)  # configured, never started: nothing answers there
    urls = [dead.url] + [peers(home).url for home in homes]
    nodes = [Node(hub, home, urls, index, manifest, peer_wait=1.5) for index, home in enumerate(homes, 1)]
    for node in nodes:
        node.start()
    results = [node.finish() for node in nodes]
    owners = fo.assign_owners(manifest, 3)
    silent = sorted(item.path for item in fo.unique_blobs(manifest) if owners[item.etag] == 0)
    assert hub_bytes(hub) == {item.path: item.size for item in manifest.files}, "still each file once"
    assert results[0]["fanout"]["hub_fallbacks"] == silent, "the next node of the chain took them"
    assert results[1]["fanout"]["hub_fallbacks"] == [], "the one after waited for it"
    assert min(node.elapsed for node in nodes) > 1.5
    for home in homes:
        verified(home, manifest)


def test_a_live_owner_is_waited_for_and_a_failed_one_is_not(hub, complete, peers, tmp_path):
    manifest = complete[1]
    owner_home = tmp_path / "a"
    owner_home.mkdir()
    progress = owner_home / "progress.json"
    owner = peers(owner_home)
    home = tmp_path / "b"
    urls = [owner.url, peers(home).url]
    stop = threading.Event()
    phase = {"value": "downloading"}

    def pretend() -> None:  # a downloader that runs but never finishes a file
        while not stop.is_set():
            document = {"commit": manifest.commit, "phase": phase["value"], "pid": 1, "started_at": 0,
                        "updated_at": time.time()}
            progress.with_suffix(".tmp").write_text(json.dumps(document))
            progress.with_suffix(".tmp").replace(progress)  # as the downloader writes it: whole or not at all
            stop.wait(0.1)

    writer = threading.Thread(target=pretend, daemon=True)
    writer.start()
    try:
        node = Node(hub, home, urls, 1, manifest, peer_wait=1.0)
        node.start()
        time.sleep(3)
        owners = fo.assign_owners(manifest, 2)
        share = {item.path for item in fo.unique_blobs(manifest) if owners[item.etag] == 0}
        assert node.is_alive() and not share & set(hub_bytes(hub)), "waited past peer_wait for a live owner"
        phase["value"] = "failed"
        failed_at = time.monotonic()
        result = node.finish()
    finally:
        stop.set()
        writer.join()
    assert time.monotonic() - failed_at < 5
    assert set(result["fanout"]["hub_fallbacks"]) == share
    assert hub_bytes(hub) == {item.path: item.size for item in manifest.files}
    verified(home, manifest)


def test_corrupt_bytes_from_a_peer_are_rejected_and_fetched_from_the_hub(hub, complete, peers, tmp_path):
    manifest = complete[1]
    holder = holding(complete, tmp_path / "a")
    shard = next(item for item in manifest.files if item.path.startswith("model-00003"))
    blob = holder / STORAGE / "blobs" / shard.etag
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))  # right size, wrong bytes: what a disk error leaves
    home = tmp_path / "b"
    urls = [peers(holder).url, peers(home).url]
    result = Node(hub, home, urls, 1, manifest, owners={item.etag: 0 for item in manifest.files})
    result.start()
    report = result.finish()
    assert report["fanout"]["rejected"] == {shard.path: urls[0]}
    assert report["files_refetched"] == [shard.path]
    assert hub_bytes(hub) == {shard.path: shard.size}, "only the rejected file, from the hub"
    verified(home, manifest)


# The module ------------------------------------------------------------------------------------------------------


def module_args(hub: HubProcess, home: pathlib.Path, plan: hw.Manifest, urls: list[str], **overrides) -> dict:
    return {"repo_id": REPO_ID, "revision": "main", "hf_home": str(home), "endpoint": hub.url, "source": "fanout",
            "manifest": plan.to_dict(), "peers": urls, "peer_index": 0, "progress_file": str(home / "p.json"),
            "progress_interval": 0.2, "peer_wait": 5, "peer_poll_interval": POLL, "retry_delay": 0.05,
            **overrides}


def test_module_plans_fetches_alone_and_refuses_what_cannot_work(hub, complete, tmp_path):
    manifest = complete[1]
    urls = ["http://127.0.0.1:9/"]
    failed, plan = module_runner.run_module("hf_model_snapshot", module_args(hub, tmp_path, manifest, urls),
                                            check_mode=True)
    assert not failed and plan["changed"] and plan["bytes_downloaded"] == manifest.bytes_total
    assert not (tmp_path / "hub").exists()
    failed, alone = module_runner.run_module("hf_model_snapshot", module_args(hub, tmp_path, manifest, urls))
    assert not failed and alone["source"] == "fanout" and alone["fanout"]["bytes_from_hub"] == manifest.bytes_total
    for overrides, words in [
        ({"manifest": None}, "source is fanout but any of the following are missing: manifest, manifest_file"),
        ({"peer_index": 1}, "peer_index must point into peers"),
        ({"peer_wait": 0.5}, "peer_wait (0.5 s) must be at least three times progress_interval"),
        ({"peers": urls * 2, "peer_index": 1}, "lists a URL twice"),
        ({"peers": ["ftp://node1/"]}, "is not an http://host:port/ URL"),
    ]:
        args = {name: value for name, value in module_args(hub, tmp_path / "x", manifest, urls, **overrides).items()
                if value is not None}
        failed, result = module_runner.run_module("hf_model_snapshot", args)
        assert failed and words in result["msg"], result["msg"]


# The peer server's configuration ---------------------------------------------------------------------------------


def test_the_peer_server_serves_verified_blobs_only_with_range_to_the_allowed_nodes(role_renderer, complete,
                                                                                   tmp_path):
    home = holding(complete, tmp_path / "node")
    manifest = complete[1]
    shard = next(item for item in manifest.files if item.sha256)
    blobs = home / STORAGE / "blobs"
    (blobs / ("f" * 64 + ".incomplete")).write_bytes(b"partial")
    (home / "progress.json").write_text(json.dumps({"phase": "done"}))
    server = PeerServer(role_renderer, tmp_path / "peer", home, home / "progress.json", allowed=["127.0.0.9"])
    assert server.test().returncode == 0, server.test().stderr
    server.start()
    try:
        base = server.url
        assert requests.get(base, timeout=5).status_code == 204
        assert requests.get(base + "progress.json", timeout=5).json() == {"phase": "done"}
        listing = {entry["name"] for entry in requests.get(base + "blobs/", timeout=5).json()}
        assert {item.etag for item in manifest.files} | {"f" * 64 + ".incomplete"} == listing
        part = requests.get(f"{base}blobs/{shard.etag}", headers={"Range": "bytes=100-199"}, timeout=5)
        assert part.status_code == 206 and part.content == (blobs / shard.etag).read_bytes()[100:200]
        for path in ["blobs/" + "f" * 64 + ".incomplete", f"snapshots/{manifest.commit}/{shard.path}",
                     "refs/main", ".hf_weights_verified.json", "blobs/../refs/main"]:
            assert requests.get(base + path, timeout=5).status_code == 404, path
        assert requests.post(f"{base}blobs/{shard.etag}", timeout=5).status_code == 405
        with socket.create_connection(("127.0.0.1", server.port), source_address=("127.0.0.2", 0)) as raw:
            raw.sendall(f"GET /blobs/{shard.etag} HTTP/1.0\r\n\r\n".encode())
            assert raw.recv(64).startswith(b"HTTP/1.1 403"), "another address than the nodes' is refused"
        assert any(f"GET /blobs/{shard.etag} HTTP/1.1\" 206 100" in line for line in server.log_lines())
    finally:
        server.stop()
    unit = role_renderer("model_weights", {}).template("model-weights-peer.service.j2")
    assert "ExecStart=/usr/sbin/nginx -p /run/model-weights-peer/ -c /etc/model-weights/peer-nginx.conf" in unit
    assert "RuntimeMaxSec=172800" in unit and "DynamicUser=yes" in unit and "[Install]" not in unit


def test_the_role_validates_the_config_as_the_template_task_does(role_renderer, tmp_path):
    """The template task's `validate:` command, on a rendered configuration (nginx -t in a scratch prefix)."""
    tasks = yaml.safe_load((REPO / "roles" / "model_weights" / "tasks" / "fanout.yml").read_text())
    command = next(task for task in tasks if "ansible.builtin.template" in task)["ansible.builtin.template"]["validate"]
    config = tmp_path / "peer.conf"
    config.write_text(render_config(role_renderer, address="127.0.0.1", port=8090, allowed=["10.0.0.1"],
                                    hf_home=tmp_path, progress_file=tmp_path / "p.json",
                                    access_log=tmp_path / "access.log"))
    argv = [part.replace("/usr/sbin/nginx", shutil.which("nginx") or "/usr/sbin/nginx")
            for part in shlex.split(command % config)]
    assert subprocess.run(argv, capture_output=True, text=True, timeout=30).returncode == 0
    config.write_text(config.read_text().replace("worker_processes 2;", "worker_processes two;"))
    assert subprocess.run(argv, capture_output=True, text=True, timeout=30).returncode != 0
