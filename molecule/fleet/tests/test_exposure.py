"""Fleet: nothing that runs inference without the API key is reachable from a client's address.

vLLM 0.33's `--api-key` guards /v1, /v2, /inference and /cohere only; POST /invocations runs chat completions
without a key (the vLLM stand-in registers it as vLLM does). The load balancer forwards only the paths clients
need, and the nodes' firewall (on by default with a load balancer in the inventory) lets only the balancer, the
monitoring hosts and the controller reach the vLLM port.
"""

from __future__ import annotations

import json
import subprocess

import pytest
import requests

from fleet_lab import BALANCER, NODES, address, node_sh

CHAT = {"model": "deepseek-ai/DeepSeek-V3.2", "max_tokens": 16,
        "messages": [{"role": "user", "content": "Hello, who are you?"}]}


def post_from_balancer(url: str) -> tuple[int, str]:
    """A POST from the load balancer's host, an allowed source (curl prints the status last)."""
    output = node_sh(BALANCER, f"curl -s -m 10 -w '\\n%{{http_code}}' -H 'Content-Type: application/json' "
                               f"-d '{json.dumps(CHAT)}' {url}")
    body, _, status = output.rpartition("\n")
    return int(status), body


def post_from_a_client_address(url: str) -> str:
    """curl from a container on the lab network that is neither a balancer, a monitoring host nor the controller:
    its status code, or 000 when no connection could be made."""
    completed = subprocess.run(
        ["docker", "run", "--rm", "--network", "gpu-sim", "--entrypoint", "curl", "gpu-sim/node:latest", "-s",
         "-o", "/dev/null", "-m", "10", "-w", "%{http_code}", "-H", "Content-Type: application/json", "-d",
         json.dumps(CHAT), url], capture_output=True, text=True, timeout=60)
    return completed.stdout.strip()


@pytest.mark.parametrize("path", ["/invocations", "/tokenize", "/metrics", "/version"])
def test_the_balancer_answers_404_for_what_clients_do_not_need(path):
    response = requests.post(f"http://{address(BALANCER)}:8000{path}", json=CHAT, timeout=30)
    assert response.status_code == 404, response.text[:200]
    assert "choices" not in response.text


def test_the_balancer_still_asks_for_the_key_on_the_api():
    response = requests.post(f"http://{address(BALANCER)}:8000/v1/chat/completions", json=CHAT, timeout=30)
    assert response.status_code == 401


def test_invocations_runs_inference_without_a_key_where_the_firewall_allows():
    """The reason for the two guards above: from an allowed source, vLLM answers /invocations without a key."""
    status, body = post_from_balancer(f"http://{address(NODES[0])}:8000/invocations")
    assert status == 200 and json.loads(body)["choices"], body[:200]


@pytest.mark.parametrize("node", NODES)
def test_a_client_address_cannot_reach_the_nodes_vllm_port(node):
    assert post_from_a_client_address(f"http://{address(node)}:8000/invocations") == "000"
    assert post_from_a_client_address(f"http://{address(node)}:8000/v1/models") == "000"
