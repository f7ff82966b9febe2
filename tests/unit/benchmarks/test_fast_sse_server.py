"""benchmarks/fast_sse_server.py: the token schedule the client-capacity benchmark takes as truth, and vLLM's
stream-interval batching of tokens into chunks."""

import json
import urllib.request
from pathlib import Path

import pytest

from lab.standin_process import StandinProcess

SERVER = Path(__file__).resolve().parents[3] / "benchmarks" / "fast_sse_server.py"
ITL = 0.01


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    process = StandinProcess(SERVER, ["--ttft", "0.02", "--itl", str(ITL)],
                             tmp_path_factory.mktemp("fast-sse") / "server.log")
    yield process.url
    process.stop()


def stream(url: str, body: dict, request_id: str) -> list[dict | str]:
    request = urllib.request.Request(f"{url}/v1/chat/completions", data=json.dumps(body).encode(),
                                     headers={"X-Request-Id": request_id, "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = response.read().decode().split("\n\n")
    payloads = [event.removeprefix("data: ") for event in events if event]
    return [payload if payload == "[DONE]" else json.loads(payload) for payload in payloads]


def stats(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/stats", timeout=10) as response:
        return json.load(response)


def contents(events: list) -> list[str]:
    return [event["choices"][0]["delta"]["content"] for event in events
            if isinstance(event, dict) and event["choices"] and "role" not in event["choices"][0]["delta"]]


@pytest.mark.parametrize(("max_tokens", "interval", "tokens_per_chunk"), [
    (5, None, [1, 1, 1, 1, 1]),
    (10, 4, [1, 4, 4, 1]),
    (9, 4, [1, 4, 4]),
    (1, 4, [1]),
])
def test_tokens_are_batched_as_vllm_batches_them(server, max_tokens, interval, tokens_per_chunk):
    body = {"model": "fast", "max_tokens": max_tokens, "stream": True}
    if interval:
        body["stream_interval"] = interval
    events = stream(server, body, f"batch-{max_tokens}-{interval}")
    assert [len(content.split()) for content in contents(events)] == tokens_per_chunk
    token_chunks = [event for event in events if isinstance(event, dict) and event["choices"]][1:]
    assert [chunk["choices"][0]["finish_reason"] for chunk in token_chunks][-1] == "length"
    assert events[-2]["usage"]["completion_tokens"] == max_tokens
    assert events[-1] == "[DONE]"


def test_the_last_token_is_written_on_its_schedule(server):
    """Each chunk goes out when its last token is due: the last one (max_tokens - 1) gaps after the first."""
    stream(server, {"model": "fast", "max_tokens": 10, "stream_interval": 4}, "schedule")
    record = next(r for r in stats(server)["requests"] if r["id"] == "schedule")
    assert record["last_due"] - record["first_due"] == pytest.approx(9 * ITL, abs=1e-6)
    assert record["first_written"] >= record["first_due"]
    assert record["last_written"] - record["first_written"] == pytest.approx(9 * ITL, abs=0.005)
