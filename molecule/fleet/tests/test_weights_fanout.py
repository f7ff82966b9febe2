"""Fleet: the weights' fan-out resumes a copy cut off by a killed peer, and falls back to the hub (issue #16).

The fleet is serving and every GPU node holds the snapshot. The test takes one file away from every GPU node but the
last (the holder), so that only the holder's peer server can supply it, slows the holder's peer port with tc (a tbf
on the traffic from port 8090 only, so that a copy takes seconds), and runs the model_weights role as
playbooks/prefetch.yml does (the step that site.yml and rolling_update.yml run). As soon as every other node is
copying the file from the holder, it kills the holder's peer server (SIGKILL to the unit's nginx). Then:

- the first node of the play (the next in the file's chain after its owner, the holder) finds nobody serving the
  file and its owner gone, and fetches the rest from the hub, from where its copy stopped (a Range request);
- every other node waits for that node and copies the rest from it, again from where its copy stopped;
- every node ends with the verified file, vLLM keeps serving (prefetch never restarts it: nothing in the
  model_weights and vllm_image roles notifies a handler or touches the vllm unit) and the peer servers are stopped.

The file is model.safetensors.index.json, the largest of the stand-in hub's (about 430 KB; its shards are about
64 KB): the downloader reads a body in one 8 MiB read, so what reached a node before the kill is kept only when the
body ends early and cleanly (the holder's kernel sends what nginx had queued, then FIN), and a body larger than the
holder's socket buffers is one that the kill cuts short. Measured with Debian's nginx and this configuration in network
namespaces on the lab's machine: unthrottled, two copies of the file complete before a kill lands; throttled, a kill
0.1 to 3 s after both began left them at 98 to 180 KB, each ended by a clean FIN.

molecule runs the scenario's test files in the order of their paths, so this one runs last (after the rolling
updates); it still leaves the lab as it found it: the throttle removed, the killed unit reset, the file on every
node (a plain prefetch.yml if the run did not bring it back).

Evidence, none of it from nginx's access log through syslog (which may drop lines): each node's own report from
the download module (bytes per source, the hub fallbacks), the hub stand-in's per-file counters (/_sim/stats) and
the file's hashes on every node.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import time
import uuid

import pytest
import requests
import yaml

from fleet_lab import BALANCER, EPHEMERAL, NODES, BackgroundPlaybook, Sampler, address, node_sh

HUB = "http://172.30.99.12:8080"  # the fleet's hub (model_weights_hf_endpoint in inventories/sandbox/group_vars)
CACHE = "/srv/huggingface/hub/models--deepseek-ai--DeepSeek-V3.2"
FILE = "model.safetensors.index.json"
PEER_PORT = 8090  # model_weights_peer_port
PEER_UNIT = "model-weights-peer.service"
# The holder's peer port (64 KB/s): a node's listing of its blobs (about 25 KB, asked every second by each other
# node) still passes within the 5 s a poll waits; the file takes seconds, and the queue is short (tbf's latency).
THROTTLE = "rate 512kbit burst 4kb latency 100ms"
# Seconds an owner may stay silent before the next node takes its file from the hub (the role's minimum; default
# 120): the run waits at most that long for the killed holder.
PEER_WAIT = 30

# The play's order of the GPU nodes (model_weights: ansible_play_hosts | sort): the chain of the file after its owner.
FLEET = sorted(NODES)
HOLDER, TAKERS = FLEET[-1], FLEET[:-1]


def node_try(node: str, script: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", "exec", node, "bash", "-c", script], capture_output=True, text=True,
                          timeout=timeout)


def digests(node: str, etag: str, link: str) -> dict:
    """The node's blob of `etag`: its git blob id and sha256 (None when absent), whether the snapshot's `link`
    points at it, and whether a partial file of it is left."""
    script = f"""
import hashlib, json, os
blob, link = {f"{CACHE}/blobs/{etag}"!r}, {link!r}
result = {{"git": None, "sha256": None, "partial": os.path.exists(blob + ".incomplete"),
           "linked": os.path.islink(link) and os.path.realpath(link) == os.path.realpath(blob)}}
if os.path.isfile(blob):
    data = open(blob, "rb").read()
    result["git"] = hashlib.sha1(b"blob %d\\0" % len(data) + data).hexdigest()
    result["sha256"] = hashlib.sha256(data).hexdigest()
print(json.dumps(result))
"""
    return json.loads(node_sh(node, f"python3 - <<'PY'\n{script}\nPY"))


def hub_counters() -> dict:
    """The hub stand-in's counters of the file (requests with and without Range, bytes sent, bodies completed)."""
    files = requests.get(f"{HUB}/_sim/stats", timeout=10).json()["files"]
    return dict(files.get(FILE, {}))


def invocation(node: str) -> str:
    return node_sh(node, "systemctl show vllm -p InvocationID --value").strip()


def throttle_peer_port(node: str, toward: str) -> str:
    """Slow what `node` sends from the peer port: an htb root that lets everything else through unshaped (no
    default class), a u32 filter on the source port into a class whose tbf has a short queue (it drops, so TCP's
    window, and with it the socket's send buffer, stays small); the device's name. The nodes run with every
    capability but CAP_SYS_RESOURCE (lab/tasks/nodes_up.yml); the kernel needs htb, tbf and u32."""
    script = (
        "set -e\n"
        f"dev=$(ip -o route get {toward} | sed -n 's/.* dev \\([^ ]*\\).*/\\1/p')\n"
        'tc qdisc replace dev "$dev" root handle 1: htb\n'
        'tc class add dev "$dev" parent 1: classid 1:10 htb rate 10gbit quantum 200000\n'
        f'tc qdisc add dev "$dev" parent 1:10 handle 10: tbf {THROTTLE}\n'
        f'tc filter add dev "$dev" parent 1: protocol ip prio 1 u32 match ip sport {PEER_PORT} 0xffff flowid 1:10\n'
        'echo "$dev"\n')
    completed = node_try(node, script)
    if completed.returncode != 0:
        node_try(node, f"tc qdisc del dev $(ip -o route get {toward} | sed -n 's/.* dev \\([^ ]*\\).*/\\1/p') root")
    assert completed.returncode == 0, f"tc on {node}: {completed.stderr.strip()}"
    return completed.stdout.strip()


def unthrottle(node: str, device: str | None) -> None:
    if device:
        node_try(node, f"tc qdisc del dev {device} root")


def serving_status() -> int | str:
    """GET /v1/models through the load balancer: the status code, or the error."""
    try:
        return requests.get(f"http://{address(BALANCER)}:8000/v1/models", timeout=10,
                            headers={"Authorization": f"Bearer {(EPHEMERAL / 'api_key').read_text().split()[0]}"}
                            ).status_code
    except requests.RequestException as error:
        return type(error).__name__


def wrapper_playbook(reports: str) -> str:
    """The weights' part of playbooks/prefetch.yml (its play, with the model_weights role only: the vllm_image role
    would record the inventory's image as the node's, not the one the rolling updates left running), then each
    node's download result (the module's own report) written to `reports`/<node>.json on the controller."""
    path = EPHEMERAL / f"weights-fanout-{uuid.uuid4().hex}.yml"
    path.write_text(yaml.safe_dump([{
        "name": "Prefetch the weights", "hosts": "gpu_nodes", "become": True, "gather_facts": True,
        "roles": [{"role": "model_weights"}],
        "tasks": [{
            "name": "Hand the node's download report to the test",
            "ansible.builtin.copy": {"content": "{{ __model_weights_result | default({}) | to_json }}",
                                     "dest": reports + "/{{ inventory_hostname }}.json", "mode": "0600"},
            "delegate_to": "localhost", "become": False,
            "vars": {"ansible_python_interpreter": "{{ ansible_playbook_python }}"}}],
    }], sort_keys=False))
    return str(path)


def wait_for_partials(etag: str, run: BackgroundPlaybook, timeout: float = 400) -> list[str]:
    """Wait until every taker has the file's partial file, i.e. its copy from the holder has begun (the downloader
    creates it once the peer answered); the takers that had it, when all did, the run ended or time ran out."""
    partial = f"{CACHE}/blobs/{etag}.incomplete"
    script = f"for i in $(seq {int(timeout * 10)}); do [ -e {partial} ] && exit 0; sleep 0.1; done; exit 1"
    watchers = {node: subprocess.Popen(["docker", "exec", node, "bash", "-c", script], stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL) for node in TAKERS}
    try:
        while run.running() and any(watcher.poll() is None for watcher in watchers.values()):
            time.sleep(0.05)
    finally:
        for watcher in watchers.values():
            if watcher.poll() is None:
                watcher.kill()
            watcher.wait()
    return [node for node, watcher in watchers.items() if watcher.returncode == 0]


def restore(etag: str, link: str, expected: str) -> None:
    """Whatever the run left: a node without the verified file gets it from the model_weights role, run as
    prefetch.yml runs it (no throttle, no kill)."""
    for node in FLEET:
        node_try(node, f"systemctl reset-failed {PEER_UNIT}")
    found = [digests(node, etag, link) for node in FLEET]
    if any(each["sha256"] != expected or not each["linked"] for each in found):
        reports = EPHEMERAL / f"weights-fanout-reports-{uuid.uuid4().hex}"
        reports.mkdir()
        restored = BackgroundPlaybook(pathlib.Path(wrapper_playbook(str(reports))), {}, "weights-fanout-restore").wait()
        assert restored.returncode == 0, restored.stdout[-3000:]


@pytest.fixture(scope="module")
def killed_peer():
    """Arrange, run the weights' prefetch, kill the holder's peer server mid-copy; what the tests need to see."""
    if len(FLEET) < 2:
        pytest.skip("the fan-out needs two GPU nodes")
    commit = json.loads(node_sh(HOLDER, "cat /etc/ansible/facts.d/model_weights.fact"))["commit"]
    link = f"{CACHE}/snapshots/{commit}/{FILE}"
    etag = node_sh(HOLDER, f"basename \"$(readlink {link})\"").strip()
    held = digests(HOLDER, etag, link)
    assert held["git"] == etag and held["linked"], f"{HOLDER} does not hold a verified {FILE} to start with: {held}"
    size = int(node_sh(HOLDER, f"stat -c %s {CACHE}/blobs/{etag}"))
    starts = {node: invocation(node) for node in FLEET}

    for node in TAKERS:
        node_sh(node, f"rm -f {CACHE}/blobs/{etag} {CACHE}/blobs/{etag}.incomplete {link}")
    reports_dir = EPHEMERAL / f"weights-fanout-reports-{uuid.uuid4().hex}"
    reports_dir.mkdir()
    hub_before = hub_counters()
    device, run = None, None
    started = time.monotonic()
    try:
        device = throttle_peer_port(HOLDER, address(TAKERS[0]))
        with Sampler(serving_status) as probe:
            run = BackgroundPlaybook(wrapper_playbook(str(reports_dir)), {"model_weights_peer_wait": PEER_WAIT},
                                     "weights-fanout-killed-peer")
            copying = wait_for_partials(etag, run)
            # One exec (the copies go on meanwhile): kill every process of the unit, then let the holder's kernel
            # send at full speed what nginx had queued (then FIN): the copies end short and cleanly.
            killed = node_try(HOLDER, f"systemctl kill --signal=SIGKILL {PEER_UNIT}; status=$?; "
                                      f"tc qdisc del dev {device} root; exit $status")
            device = None
            holder_state = node_try(HOLDER, f"for i in $(seq 50); do state=$(systemctl is-active {PEER_UNIT}); "
                                            'case $state in active|*ing) sleep 0.1;; *) break;; esac; done; '
                                            'echo "$state"').stdout.strip()
            run_result = run.wait()
        elapsed = time.monotonic() - started
        hub_after = hub_counters()
        # The killed unit stays failed (the role's stop leaves a stopped unit alone): back to inactive.
        node_try(HOLDER, f"systemctl reset-failed {PEER_UNIT}")
        assert copying == TAKERS, (f"not every node was copying {FILE} from {HOLDER} when it was to be killed "
                                   f"(copying: {copying}); see {run.log}")
        # A unit whose main process died of a signal is failed; systemctl kill fails on a unit that was not running.
        assert killed.returncode == 0 and holder_state in ("failed", "inactive"), (holder_state, killed.stderr)
        assert run_result.returncode == 0, run_result.stdout[-4000:]
        reports = {node: json.loads((reports_dir / f"{node}.json").read_text()) for node in FLEET}
        yield {
            "etag": etag, "link": link, "size": size, "held": held, "reports": reports,
            "hub": {key: hub_after.get(key, 0) - hub_before.get(key, 0) for key in hub_after},
            "statuses": probe.samples, "starts": starts, "elapsed": elapsed,
        }
    finally:
        unthrottle(HOLDER, device)
        if run is not None and run.running():  # an error in the test: let the run end before restoring
            run.wait()
        restore(etag, link, held["sha256"])


def peer_bytes(report: dict, node: str) -> int:
    """Bytes a node's download read from `node`'s peer server (bytes_by_peer is keyed by the peer's URL)."""
    fanout = report["fanout"]
    return sum(count for url, count in fanout["bytes_by_peer"].items() if f"//{address(node)}:" in url)


def test_the_copies_cut_off_by_the_kill_went_on_from_their_offset(killed_peer):
    """Each node that was copying from the killed holder kept what had arrived (some bytes, not all) and fetched only
    the rest elsewhere: bytes from all sources add up to the file's size exactly (a restart would read it again)."""
    size, reports = killed_peer["size"], killed_peer["reports"]
    for node in TAKERS:
        fanout = reports[node]["fanout"]
        cut_at = peer_bytes(reports[node], HOLDER)
        assert 0 < cut_at < size, f"{node} read {cut_at} of {size} bytes from {HOLDER}, not a copy cut short: {fanout}"
        assert fanout["bytes_from_hub"] + fanout["bytes_from_peers"] == size, f"{node} read bytes twice: {fanout}"
        assert fanout["rejected"] == {}, fanout
    first = reports[TAKERS[0]]["fanout"]
    assert first["bytes_from_hub"] == size - peer_bytes(reports[TAKERS[0]], HOLDER), first
    for node in TAKERS[1:]:
        fanout = reports[node]["fanout"]
        assert fanout["bytes_from_hub"] == 0, f"{node} went to the hub though {TAKERS[0]} could serve it: {fanout}"
        assert fanout["bytes_from_peers"] - peer_bytes(reports[node], HOLDER) > 0, fanout


def test_the_node_that_nobody_could_serve_took_the_rest_from_the_hub_with_range(killed_peer):
    """The first node of the chain after the dead owner took the file from the hub, once, from its offset: the hub
    counted a Range request and sent exactly the bytes that node had not got from the holder."""
    size, reports, hub = killed_peer["size"], killed_peer["reports"], killed_peer["hub"]
    first = reports[TAKERS[0]]["fanout"]
    assert first["hub_fallbacks"] == [FILE], first
    for node in TAKERS[1:]:
        assert reports[node]["fanout"]["hub_fallbacks"] == [], reports[node]["fanout"]
    assert hub.get("range_get", 0) >= 1, f"the hub saw no Range request for {FILE}: {hub}"
    assert hub.get("bodies_completed", 0) == 1, f"{FILE} crossed the internet more than once: {hub}"
    assert hub.get("bytes_sent", 0) == size - peer_bytes(reports[TAKERS[0]], HOLDER), hub
    holder = reports[HOLDER]["fanout"]
    assert holder["bytes_from_hub"] == 0 and holder["bytes_from_peers"] == 0, holder


def test_every_node_holds_the_verified_file(killed_peer):
    etag, held = killed_peer["etag"], killed_peer["held"]
    for node in FLEET:
        found = digests(node, etag, killed_peer["link"])
        assert found["git"] == etag and found["sha256"] == held["sha256"], (node, found)
        assert found["linked"] and not found["partial"], (node, found)
        assert killed_peer["reports"][node]["files_total"] > 160


def test_the_fleet_kept_serving_and_the_peer_servers_stopped(killed_peer):
    statuses = killed_peer["statuses"]
    assert len(statuses) > 20 and set(statuses) == {200}, statuses
    assert {node: invocation(node) for node in FLEET} == killed_peer["starts"], "prefetch restarted vLLM"
    for node in FLEET:
        state = node_try(node, f"systemctl is-active {PEER_UNIT}").stdout.strip()
        assert state == "inactive", f"{node}: {PEER_UNIT} is {state}"
