"""Fleet: the GPU nodes pull the vLLM image through the lab's pull-through registry mirror, by digest.

The mirror (gpu-sim-registry-mirror, Debian's docker-registry with proxy.remoteurl set to the lab registry) is
the rack's cache in front of the upstream registry (lab/tasks/registry_up.yml). Both registries log every
request to their container's log, in the combined format: `<address> - - [<time>] "GET <path> HTTP/1.1" <status>`.
Read together, the two logs show who fetched which blob from whom. The mirror's cache lives as long as its
container, and so does its log.

The registries outlive a scenario: beside a sandbox they keep running from one scenario to the next, and the lab
network hands a destroyed node's address to the next node created. So only the log lines written since this
fleet's first node was created are this fleet's: before them, the same address may have been the reliability
scenario's node, which pulls from the registry directly.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections import Counter

import pytest
import requests
import yaml

from fleet_lab import NODES, REPO, address, node_sh

LAB = yaml.safe_load((REPO / "lab" / "vars.yml").read_text())
UPSTREAM_CONTAINER, MIRROR_CONTAINER = "gpu-sim-registry", "gpu-sim-registry-mirror"
MIRROR = f"{LAB['lab_standin_addresses']['registry_mirror']}:5000"
UPSTREAM = f"{LAB['lab_standin_addresses']['registry']}:5000"
REPOSITORY = LAB["lab_vllm_repository"]
# The lab registry as this machine reaches it: where the lab pushed the image, and where the inventory reads its
# digest (inventories/sandbox/group_vars/all/main.yml).
PUSHED = f"127.0.0.1:{LAB['lab_registry_host_port']}/{REPOSITORY}:{LAB['lab_vllm_tag']}"
MANIFEST_TYPES = ("application/vnd.docker.distribution.manifest.v2+json",
                  "application/vnd.oci.image.manifest.v1+json")
ACCESS_LINE = re.compile(r'^(?P<address>[0-9.]+) - \S+ \[[^\]]+\] "(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[0-9.]+" '
                         r'(?P<status>[0-9]{3}) ')
# Extra fetches of every blob through the mirror per GPU node, standing in for the rest of a rack's nodes.
MORE_PULLS = 3


def pinned() -> tuple[str, str]:
    """The digest and image ID of the image the fleet pinned (the lab pushed it; the inventory reads it here)."""
    image = json.loads(subprocess.run(["docker", "image", "inspect", PUSHED], check=True, capture_output=True,
                                      text=True).stdout)[0]
    digest = next(entry.split("@")[1] for entry in image["RepoDigests"]
                  if entry.startswith(PUSHED.rsplit(":", 1)[0] + "@"))
    return digest, image["Id"]


def blobs_of(digest: str) -> list[str]:
    """The config and layer digests of the pinned manifest, read from the lab registry."""
    response = requests.get(f"http://{PUSHED.split('/')[0]}/v2/{REPOSITORY}/manifests/{digest}",
                            headers={"Accept": ", ".join(MANIFEST_TYPES)}, timeout=30)
    response.raise_for_status()
    manifest = response.json()
    assert manifest.get("mediaType", MANIFEST_TYPES[0]) in MANIFEST_TYPES, manifest.get("mediaType")
    return [manifest["config"]["digest"]] + [layer["digest"] for layer in manifest["layers"]]


def fleet_created() -> str:
    """When the first of this fleet's GPU nodes was created (Docker's RFC 3339 time, which `docker logs --since`
    takes)."""
    return min(subprocess.run(["docker", "inspect", "--format", "{{.Created}}", node], check=True,
                              capture_output=True, text=True).stdout.strip() for node in NODES)


def blob_gets(container: str, since: str | None = None) -> Counter:
    """(client address, blob digest) -> the number of GET requests of the image's repository's blobs that the
    registry answered 200, from its container's log (from `since` on, else all of it)."""
    logs = subprocess.run(["docker", "logs", *(["--since", since] if since else []), container], check=True,
                          capture_output=True, text=True)
    prefix = f"/v2/{REPOSITORY}/blobs/"
    counts: Counter = Counter()
    for line in (logs.stdout + logs.stderr).splitlines():
        match = ACCESS_LINE.match(line)
        if match and match["method"] == "GET" and match["status"] == "200" and match["path"].startswith(prefix):
            counts[(match["address"], match["path"][len(prefix):])] += 1
    return counts


@pytest.fixture(scope="module")
def image() -> dict:
    digest, image_id = pinned()
    since = fleet_created()
    upstream_log = blob_gets(UPSTREAM_CONTAINER, since)
    return {"digest": digest, "id": image_id, "blobs": blobs_of(digest),
            # Before this module's own fetches: what this fleet's converge left.
            "mirror_log": blob_gets(MIRROR_CONTAINER, since), "upstream_log": upstream_log,
            # What the registry served before this fleet existed (earlier scenarios' nodes, an earlier fleet).
            "upstream_log_before": blob_gets(UPSTREAM_CONTAINER) - upstream_log}


def test_every_node_holds_the_pinned_image_pulled_through_the_mirror(image):
    for node in NODES:
        pulled = json.loads(node_sh(node, f"docker image inspect {MIRROR}/{REPOSITORY}@{image['digest']}"))[0]
        assert pulled["Id"] == image["id"], f"{node} holds other bytes than the pinned image"
        assert f"{MIRROR}/{REPOSITORY}@{image['digest']}" in pulled["RepoDigests"]
        assert not [entry for entry in pulled["RepoDigests"] if entry.startswith(UPSTREAM + "/")], \
            f"{node} pulled the image from the registry directly: {pulled['RepoDigests']}"
        # The direct path's canonical name, which the service and its local fact use.
        canonical = f"{REPOSITORY}:{LAB['lab_vllm_tag']}"
        assert node_sh(node, f"docker image inspect --format '{{{{.Id}}}}' {canonical}").strip() == image["id"]


def test_every_node_fetched_every_blob_from_the_mirror_and_none_from_the_registry(image):
    nodes = {node: address(node) for node in NODES}
    for node, node_address in nodes.items():
        missing = [blob for blob in image["blobs"] if not image["mirror_log"][(node_address, blob)]]
        assert not missing, f"{node} ({node_address}) fetched no {missing} from the mirror"
    around = {key: count for key, count in image["upstream_log"].items()
              if key[0] in nodes.values() and key[1] in image["blobs"]}
    assert not around, f"GPU nodes fetched blobs from the registry, around the mirror: {around}"


def test_the_mirror_fetched_each_blob_from_the_registry_a_bounded_number_of_times(image):
    """Not one fetch per pull: Debian's distribution 2.8 reads a blob it misses twice from its upstream (one read
    to store it, one to answer), plus once for each request that arrives while that first miss is in flight, so
    the converge's concurrent pulls cost at most 1 + len(NODES) reads of each blob; once stored, none."""
    mirror_address = MIRROR.split(":")[0]
    if any(image["upstream_log_before"][(mirror_address, blob)] for blob in image["blobs"]):
        pytest.skip("the mirror cached the image before this fleet was created (an earlier fleet beside the same "
                    "sandbox): this fleet's pulls cannot show its first fetches")
    fetched = {blob: image["upstream_log"][(mirror_address, blob)] for blob in image["blobs"]}
    assert all(fetched.values()), f"the mirror never fetched some blobs from the registry: {fetched}"
    assert max(fetched.values()) <= 1 + len(NODES), fetched


def test_more_pulls_through_the_mirror_cost_the_registry_nothing(image):
    """More nodes of the rack (here: each GPU node MORE_PULLS times over) fetch every blob through the mirror:
    each arrives with its digest's bytes, and the registry sees no request for any of them."""
    mirror_address = MIRROR.split(":")[0]
    before = {blob: blob_gets(UPSTREAM_CONTAINER)[(mirror_address, blob)] for blob in image["blobs"]}
    for node in NODES:
        for blob in image["blobs"]:
            url = f"http://{MIRROR}/v2/{REPOSITORY}/blobs/{blob}"
            sums = node_sh(node, f"for i in $(seq {MORE_PULLS}); do curl -sSf {url} | sha256sum; done").split("\n")
            assert [line.split()[0] for line in sums if line] == [blob.split(":")[1]] * MORE_PULLS, (node, blob)
    served = blob_gets(MIRROR_CONTAINER)
    for node in NODES:
        assert all(served[(address(node), blob)] >= MORE_PULLS for blob in image["blobs"]), node
    after = blob_gets(UPSTREAM_CONTAINER)
    assert {blob: after[(mirror_address, blob)] for blob in image["blobs"]} == before, \
        "the mirror went back to the registry for blobs it had cached"
