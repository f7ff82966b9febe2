"""Fleet: rolling updates through the load balancer, under continuous client load.

Clients send chat completions, streaming and not, through the load balancer in a bounded loop for the whole
rollout; every answer must be complete (HTTP 200, and for a stream every chunk up to `data: [DONE]`).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
import uuid

import pytest
import requests
import yaml

from fleet_lab import (BALANCER, EPHEMERAL, NODES, REPO, Sampler, address, current_key, kernel_cache_marker,
                       node_sh)

REGISTRY = "127.0.0.1:15000/vllm/vllm-openai-rocm"
LOG_DIR = REPO / "reports" / "fleet"


def running_image(node: str) -> str:
    """The ID of the image the node's vLLM container runs (the unit runs the image by its ID)."""
    return node_sh(node, "docker inspect --format '{{.Image}}' vllm").strip()


def image_id(node: str, reference: str) -> str:
    return node_sh(node, f"docker image inspect --format '{{{{.Id}}}}' {reference}").strip()


def invocation(node: str) -> str:
    return node_sh(node, "systemctl show vllm -p InvocationID --value").strip()


def servers_up() -> list[str]:
    """The backend servers HAProxy's runtime API reports UP (`show stat` through the admin socket)."""
    script = ("import socket; s = socket.socket(socket.AF_UNIX); s.connect('/run/haproxy/admin.sock'); "
              "s.sendall(b'show stat\\n'); print(b''.join(iter(lambda: s.recv(65536), b'')).decode())")
    stats = node_sh(BALANCER, f'python3 -c "{script}"')
    rows = [line.split(",") for line in stats.splitlines() if line.startswith("vllm,")]
    return sorted(row[1] for row in rows if row[1] not in ("BACKEND", "FRONTEND") and row[17] == "UP")


def digest_of(tag: str) -> str:
    inspect = subprocess.run(["docker", "image", "inspect", f"{REGISTRY}:{tag}"], check=True, capture_output=True,
                             text=True).stdout
    return json.loads(inspect)[0]["RepoDigests"][0].split("@")[1]


def rolling_update(extra_vars: dict, log_name: str, playbook: str = "playbooks/rolling_update.yml"
                   ) -> subprocess.CompletedProcess:
    vars_file = EPHEMERAL / f"extra-vars-{uuid.uuid4().hex}.yml"
    vars_file.touch(mode=0o600)
    vars_file.write_text(yaml.safe_dump(extra_vars))
    completed = subprocess.run(
        ["ansible-playbook", str(REPO / playbook), "-i", str(EPHEMERAL / "inventory"),
         "-e", f"@{vars_file}"], cwd=REPO, capture_output=True, text=True, timeout=1800,
        env={**os.environ, "ANSIBLE_NOCOLOR": "1"})
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    (LOG_DIR / f"{log_name}.log").write_text(completed.stdout + completed.stderr)
    return completed


class ClientLoad:
    """`workers` clients in a loop through the load balancer until stopped (at most `limit` requests each)."""

    def __init__(self, url: str, api_key: str, workers: int = 4, limit: int = 5000) -> None:
        self.url, self.headers = url, {"Authorization": f"Bearer {api_key}"}
        self.limit, self.stop_event = limit, threading.Event()
        self.results: list[tuple[bool, bool, str]] = []  # (streamed, ok, detail)
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._loop, args=(index,), daemon=True) for index in range(workers)]

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc_info):
        self.stop_event.set()
        for thread in self.threads:
            thread.join(timeout=120)

    def _loop(self, index: int) -> None:
        session = requests.Session()
        for number in range(self.limit):
            if self.stop_event.is_set():
                return
            streamed = (index + number) % 2 == 0
            ok, detail = self._one(session, streamed)
            with self.lock:
                self.results.append((streamed, ok, detail))

    def _one(self, session: requests.Session, streamed: bool) -> tuple[bool, str]:
        body = {"model": "deepseek-ai/DeepSeek-V3.2", "max_tokens": 64, "stream": streamed,
                "messages": [{"role": "user", "content": "Hello, who are you?"}]}
        try:
            with session.post(f"{self.url}/v1/chat/completions", json=body, headers=self.headers, timeout=120,
                              stream=streamed) as response:
                if response.status_code != 200:
                    return False, f"HTTP {response.status_code}: {response.text[:200]}"
                if not streamed:
                    return bool(response.json()["choices"][0]["message"]["content"]), "non-stream"
                lines = [line for line in response.iter_lines(decode_unicode=True) if line]
                if not lines or lines[-1] != "data: [DONE]":
                    return False, f"stream ended without [DONE] after {len(lines)} lines"
                if any('"error"' in line for line in lines):
                    return False, "error event in the stream"
                return True, "stream"
        except (requests.RequestException, ValueError, KeyError) as error:
            return False, f"{type(error).__name__}: {error}"

    def summary(self) -> dict:
        failures = [detail for _, ok, detail in self.results if not ok]
        return {"requests": len(self.results), "streamed": sum(1 for streamed, _, _ in self.results if streamed),
                "failures": failures}


def weights_source() -> str:
    """The nodes' model_weights_source, as the scenario's host_vars set it."""
    host_vars = yaml.safe_load((REPO / "molecule" / "fleet" / "host_vars" / f"{NODES[0]}.yml").read_text())
    return host_vars.get("model_weights_source", "hub")


def test_the_weights_crossed_the_internet_once():
    """Every node holds the same snapshot, and files reached the nodes over the LAN, not from the hub: with
    model_weights_source seed, the other nodes copied every file from the first; with fanout, each node copied
    files from the others' peer servers (nginx, its transfers logged to the journal), never one file from two
    nodes, no file went both ways between two nodes, and the peer servers no longer run."""
    snapshot = "/srv/huggingface/hub/models--deepseek-ai--DeepSeek-V3.2/snapshots/*"
    files = [node_sh(node, f"cd {snapshot} && find . -type l | sort | xargs sha256sum") for node in NODES]
    assert all(listing == files[0] for listing in files) and files[0].count("\n") > 160
    if weights_source() == "seed":
        served = node_sh(NODES[0], "journalctl -u model-weights-seed --no-pager --output=cat")
        for node in NODES[1:]:
            copied = {line.split('"GET /')[1].split(" ")[0] for line in served.splitlines()
                      if line.startswith(address(node) + " ") and '"GET /' in line and '" 200 ' in line}
            assert len(copied) == files[0].count("\n"), f"{node} did not copy every file from the seed"
    elif weights_source() == "fanout":
        blobs = set(node_sh(NODES[0], f"cd {snapshot} && find . -type l | xargs readlink | xargs -n1 basename").split())
        logs = {server: node_sh(server, "journalctl -t model_weights_peer --no-pager --output=cat") for server in NODES}
        copied = {(server, client): {line.split('"GET /blobs/')[1].split(" ")[0] for line in logs[server].splitlines()
                                     if line.startswith(address(client) + " ") and re.search(r'" 20[06] ', line)}
                  for server in NODES for client in NODES if server != client}
        for client in NODES:
            sources = [files for (server, to), files in copied.items() if to == client]
            assert set().union(*sources), f"{client} copied nothing from its peers"
            assert sum(len(files) for files in sources) == len(set().union(*sources)), (
                f"{client} copied a file from two peers")
        for (server, client), files in copied.items():
            assert not files & copied[(client, server)], f"a file went both ways between {server} and {client}"
        # nginx drops an access-log line when the syslog socket is full (it never blocks on logging), so the logs
        # can show that no file went twice but not that every file went: that completeness is asserted by the unit
        # tests with real nginx (tests/unit/plugins/test_hf_fanout.py).
        assert set().union(*copied.values()) <= blobs, "only the snapshot's files crossed the LAN"
        for node in NODES:
            state = node_sh(node, "systemctl show model-weights-peer -p ActiveState --value").strip()
            assert state == "inactive", "the peer server runs only during the download"
    else:
        pytest.skip(f"model_weights_source {weights_source()}: every node downloads from the hub")


@pytest.fixture(scope="module")
def api_key() -> str:
    return (EPHEMERAL / "api_key").read_text().split()[0]


@pytest.fixture(scope="module")
def balancer_url() -> str:
    return f"http://{address(BALANCER)}:8000"


def test_the_balancer_serves_from_every_node(balancer_url, api_key):
    answers = [requests.get(f"{balancer_url}/v1/models", headers={"Authorization": f"Bearer {api_key}"}, timeout=10)
               for _ in range(4)]
    assert all(answer.status_code == 200 for answer in answers)
    assert requests.get(f"{balancer_url}/v1/models", timeout=10).status_code == 401
    assert servers_up() == sorted(NODES)


def test_a_rolling_update_reaches_every_node_without_a_failed_request(balancer_url, api_key):
    """A new image, the canary first, then the other nodes as one batch (rolling_update_serial [1, 2]): under
    client load through the balancer, no failed request, and never more nodes out of rotation than the batch."""
    before = {node: running_image(node) for node in NODES}
    batch = len(NODES) - 1
    with ClientLoad(balancer_url, api_key) as load, Sampler(servers_up) as rotation:
        time.sleep(3)
        run = rolling_update({"vllm_image_tag": "v0.33.1", "vllm_image_digest": digest_of("v0.33.1"),
                              "rolling_update_serial": [1, batch]}, "rolling-update")
        time.sleep(3)
    summary = load.summary()
    assert run.returncode == 0, run.stdout[-3000:]
    out_of_rotation = [len(NODES) - len(sample) for sample in rotation.samples]
    assert out_of_rotation and max(out_of_rotation) == batch, rotation.samples
    # The canary alone first: a sample with exactly one node out comes before the first with the whole batch out.
    assert 1 in out_of_rotation and out_of_rotation.index(1) < out_of_rotation.index(batch), out_of_rotation
    assert summary["requests"] > 20 and summary["streamed"] > 10, summary
    assert summary["failures"] == [], summary["failures"][:10]
    after = {node: running_image(node) for node in NODES}
    assert after == {node: image_id(node, "vllm/vllm-openai-rocm:v0.33.1") for node in NODES}, (before, after)
    assert all(after[node] != before[node] for node in NODES), (before, after)
    # The kernel caches of the new image: the canary warmed up; in the batch after it, the node of the same GPU
    # architecture copied the canary's and the other architecture's node warmed up its own.
    canary, other_architecture, same_architecture = NODES
    keys = {node: current_key(node) for node in NODES}
    assert all(keys[node].startswith(after[node].removeprefix("sha256:")[:12]) for node in NODES), (keys, after)
    assert kernel_cache_marker(canary, keys[canary]) == {"key": keys[canary], "warmed_up_on": canary}
    assert kernel_cache_marker(other_architecture, keys[other_architecture]) == {
        "key": keys[other_architecture], "warmed_up_on": other_architecture}
    assert keys[same_architecture] == keys[canary]
    assert kernel_cache_marker(same_architecture, keys[canary]) == {"key": keys[canary], "copied_from": canary}


def test_a_broken_version_stops_at_the_canary_and_the_fleet_keeps_serving(balancer_url, api_key):
    images = {node: running_image(node) for node in NODES}
    later_starts = {node: invocation(node) for node in NODES[1:]}
    with ClientLoad(balancer_url, api_key) as load:
        time.sleep(3)
        # Starts and answers /health, but a 128-token context cannot hold the smoke test's requests.
        run = rolling_update({"vllm_image_tag": "v0.33.1", "vllm_image_digest": digest_of("v0.33.1"),
                              "vllm_service_extra_args": ["--max-model-len", "128"]}, "rolling-update-broken")
        time.sleep(3)
    summary = load.summary()
    assert run.returncode != 0
    assert f"The rollout stopped at {NODES[0]}" in run.stdout
    assert summary["failures"] == [], summary["failures"][:10]
    assert {node: running_image(node) for node in NODES} == images
    assert "--max-model-len" not in node_sh(NODES[0], "cat /etc/systemd/system/vllm.service")
    assert {node: invocation(node) for node in NODES[1:]} == later_starts, "the rollout went past the canary"
    assert servers_up() == sorted(NODES)


def test_a_flag_change_in_site_ymls_serve_step_rolls_a_node_at_a_time(balancer_url, api_key):
    """A changed flag, as site.yml run again applies it to a serving fleet (its serve step, playbooks/serve.yml,
    run alone here: that the steps before it change nothing on a serving fleet is molecule's idempotence step, a
    whole second site.yml): the nodes restart a batch at a time (the default batches, of one here), each drained
    first, with no failed client request."""
    pinned = {"vllm_image_tag": "v0.33.1", "vllm_image_digest": digest_of("v0.33.1")}
    starts = {node: invocation(node) for node in NODES}
    with ClientLoad(balancer_url, api_key) as load, Sampler(servers_up) as rotation:
        time.sleep(3)
        run = rolling_update({**pinned, "vllm_service_extra_args": ["--max-num-seqs", "128"]}, "site-flag-change",
                             playbook="playbooks/serve.yml")
        time.sleep(3)
    summary = load.summary()
    assert run.returncode == 0, run.stdout[-3000:]
    assert summary["failures"] == [], summary["failures"][:10]
    assert all(invocation(node) != starts[node] for node in NODES), "a node was not restarted"
    assert rotation.samples and min(len(sample) for sample in rotation.samples) >= len(NODES) - 1, rotation.samples
    assert any(len(sample) == len(NODES) - 1 for sample in rotation.samples), "no node was taken out to restart"
    assert servers_up() == sorted(NODES)
