"""The warm-up fan-out (roles/vllm_service/README.md, "Kernel caches"): the kernel caches are keyed by image ID and
GPU architecture, one node per key warms up and a node of the same architecture copies its caches before it
starts. Node 1 (MI325X) and node 3 (MI300X) are both gfx942, node 2 (MI355X) is gfx950. These hold after the
first deployment (this file runs before the rolling updates; test_rolling_update.py checks the markers again after
the image update, where the canary warms up and the later batch copies)."""

from __future__ import annotations

import json
import re

from fleet_lab import KERNEL_CACHE, NODES, current_key, kernel_cache_marker, node_sh

WARMED_UP, OTHER_ARCHITECTURE, SAME_ARCHITECTURE = NODES


def journal(node: str) -> str:
    return node_sh(node, "journalctl -u vllm --no-pager --output=cat")


def engine_starts(node: str) -> list[float]:
    """Every start's engine initialisation on the node, as the stand-in logs it like vLLM's core.py (torch.compile
    within it: compiled on a cold cache, loaded from a warm one)."""
    return [float(seconds) for seconds in re.findall(r"init engine \(profile, create kv cache, warmup model\) took "
                                                     r"([0-9.]+) s", journal(node))]


def test_the_caches_are_keyed_by_image_and_architecture():
    keys = {node: current_key(node) for node in NODES}
    image = {key.split("-", 1)[0] for key in keys.values()}
    assert len(image) == 1, keys
    assert keys[WARMED_UP] == keys[SAME_ARCHITECTURE] and keys[WARMED_UP].endswith("-gfx942"), keys
    assert keys[OTHER_ARCHITECTURE].endswith("-gfx950"), keys


def test_one_node_per_architecture_warmed_up_and_the_other_copied_its_caches():
    key, other_key = current_key(WARMED_UP), current_key(OTHER_ARCHITECTURE)
    assert kernel_cache_marker(WARMED_UP, key) == {"key": key, "warmed_up_on": WARMED_UP}
    assert kernel_cache_marker(OTHER_ARCHITECTURE, other_key) == {"key": other_key, "warmed_up_on": OTHER_ARCHITECTURE}
    assert kernel_cache_marker(SAME_ARCHITECTURE, key) == {"key": key, "copied_from": WARMED_UP}
    # The gfx950 caches were never offered to a gfx942 node, nor the other way round.
    assert node_sh(SAME_ARCHITECTURE, f"ls {KERNEL_CACHE}/exports").split() == [f"{key}.tar", f"{key}.tar.sha256"]
    assert other_key not in node_sh(WARMED_UP, f"ls {KERNEL_CACHE}")
    assert key not in node_sh(OTHER_ARCHITECTURE, f"ls {KERNEL_CACHE}")
    # Every node serves what it holds to later nodes, and its server runs only while a node copies.
    for node in NODES:
        fact = json.loads(node_sh(node, "cat /etc/ansible/facts.d/vllm_kernel_cache.fact"))
        assert current_key(node) in fact["complete"], (node, fact)
        assert node_sh(node, "systemctl show vllm-kernel-cache -p ActiveState --value").strip() == "inactive"


def test_only_the_nodes_that_warmed_up_compiled_kernels():
    """The stand-in compiles torch.compile's graph only on a cold cache, and a cold start takes longer: node 3 never
    compiled, and each of its starts was quicker than node 1's cold ones."""
    compiled = {node: "Compiling a graph for compile range" in journal(node) for node in NODES}
    assert compiled == {WARMED_UP: True, OTHER_ARCHITECTURE: True, SAME_ARCHITECTURE: False}
    assert "Directly load the compiled graph(s)" in journal(SAME_ARCHITECTURE)
    copied, cold = engine_starts(SAME_ARCHITECTURE), max(engine_starts(WARMED_UP))
    assert copied and max(copied) < cold / 2, (copied, engine_starts(WARMED_UP))
