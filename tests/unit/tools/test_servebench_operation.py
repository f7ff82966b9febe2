"""servebench as an operator runs it: a base URL ending in /v1."""

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "tools"))

from servebench.client import Target  # noqa: E402


def test_a_base_url_ending_in_v1_is_the_server_root_as_for_the_smoke_test():
    assert Target.from_url("http://node01:8000/v1").path == "/v1/chat/completions"
    assert Target.from_url("http://node01:8000/v1/").path == "/v1/chat/completions"
    assert Target.from_url("http://lb/vllm/v1").path == "/vllm/v1/chat/completions"
    assert Target.from_url("http://lb/v1", "/chat/completions").path == "/v1/chat/completions"
