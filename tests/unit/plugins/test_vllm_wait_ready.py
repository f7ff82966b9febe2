"""vllm_wait_ready: start-up phases from vLLM's log lines, crash detection from systemd's state, and the module end
to end against a real HTTP /health and scripted systemctl/journalctl on PATH."""

import http.server
import json
import pathlib
import threading

import pytest
from ansible.module_utils import vllm_startup  # plugins/module_utils/, through tests/unit/conftest.py

from tests.helpers import module_runner

# Lines as vLLM 0.33 logs them through `docker run` into the journal (prefixes trimmed by --output=cat).
VLLM_START_LOG = [
    "(APIServer pid=1) INFO 11-29 03:10:01 [utils.py:253] non-default args: {'model': 'deepseek-ai/DeepSeek-V3.2'}",
    "(Worker_TP0 pid=210) INFO 11-29 03:11:40 [default_loader.py:507] Loading weights took 95.31 seconds",
    "(Worker_TP0 pid=210) INFO 11-29 03:12:30 [gpu_worker.py:773] Available KV cache memory: 61.20 GiB",
    "(EngineCore_DP0 pid=150) INFO 11-29 03:14:02 [gpu_model_runner.py:4120] Graph capturing finished in 21 secs",
    "(APIServer pid=1) INFO 11-29 03:14:05 [api_server.py:1900] Starting vLLM server on http://0.0.0.0:8000",
]


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ([], "container starting"),
        (VLLM_START_LOG[:1], "parsing the configuration"),
        (["Loading safetensors checkpoint shards:  45% Completed | 74/163 [01:02<01:20,  1.12it/s]"],
         "loading the weights (74/163 shards)"),
        (VLLM_START_LOG[:2], "weights loaded, profiling memory"),
        (VLLM_START_LOG[:3], "KV cache allocated, compiling and warming up kernels"),
        (VLLM_START_LOG, "API server starting"),
        (VLLM_START_LOG + ["INFO:     Application startup complete."], "API server up, waiting for /health"),
        (["(APIServer pid=1) INFO 11-29 03:10:01 [api_server.py:1] GET /metrics"], "container starting"),
    ],
)
def test_the_newest_marker_names_the_phase(lines, expected):
    assert vllm_startup.startup_phase(lines) == expected


def test_a_batch_without_markers_keeps_the_previous_phase():
    assert vllm_startup.startup_phase(["unrelated"], previous="loading the weights") == "loading the weights"


UP = {"ActiveState": "active", "SubState": "running", "NRestarts": "0", "ExecMainStatus": "0"}


@pytest.mark.parametrize(
    ("current", "expected"),
    [
        (UP, None),
        ({**UP, "ActiveState": "activating", "SubState": "auto-restart", "ExecMainStatus": "1"}, "exited (status 1)"),
        ({**UP, "NRestarts": "1", "ExecMainStatus": "125"}, "systemd restarted it"),
        ({**UP, "ActiveState": "failed", "SubState": "failed", "Result": "exit-code", "ExecMainStatus": "1"},
         "result exit-code"),
        ({**UP, "ActiveState": "inactive", "SubState": "dead"}, "stopped"),
    ],
)
def test_crash_reasons(current, expected):
    reason = vllm_startup.crash_reason(UP, current)
    assert (reason is None) if expected is None else (expected in reason)


def test_the_root_cause_comes_first_among_the_error_lines():
    log = ["(Worker_TP0 pid=210) ERROR 11-29 04:09:40 [gpu_worker.py:1] Traceback (most recent call last):",
           "torch.OutOfMemoryError: HIP out of memory. Tried to allocate 7.00 GiB.",
           "  File \"/usr/local/lib/python3.12/dist-packages/vllm/v1/engine/utils.py\", line 1473",
           "RuntimeError: Engine core initialization failed. See root cause above.",
           "RuntimeError: Engine core initialization failed. See root cause above.",
           "vllm.service: Failed with result 'exit-code'.", "Error: No such container: vllm"]
    assert vllm_startup.error_lines(log) == [
        "torch.OutOfMemoryError: HIP out of memory. Tried to allocate 7.00 GiB.",
        "RuntimeError: Engine core initialization failed. See root cause above."]


def test_systemctl_show_output_is_parsed():
    assert vllm_startup.parse_systemctl_show("ActiveState=active\nNRestarts=2\nInvocationID=ab=c\n") == {
        "ActiveState": "active", "NRestarts": "2", "InvocationID": "ab=c"}


class Node:
    """A scripted systemd on PATH (state and journal from files) and a /health that answers 503 until told."""

    def __init__(self, tmp_path: pathlib.Path) -> None:
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        self.state_file, self.journal_file = tmp_path / "state", tmp_path / "journal"
        self.set_state(UP)
        self.journal_file.write_text("")
        (self.bin / "systemctl").write_text(f"#!/bin/sh\ncat {self.state_file}\n")
        # Every line is "new" on every call, which also shows the module keeps the newest phase, not the first.
        (self.bin / "journalctl").write_text(f"#!/bin/sh\ncat {self.journal_file}\necho '-- cursor: s=1'\n")
        for tool in ("systemctl", "journalctl"):
            (self.bin / tool).chmod(0o755)
        self.healthy = threading.Event()
        node = self

        class Health(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                self.send_response(200 if node.healthy.is_set() else 503)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/health"

    def set_state(self, state: dict) -> None:
        self.state_file.write_text("".join(f"{key}={value}\n" for key, value in {**state, "InvocationID": "i1"}.items()))

    def log(self, *lines: str) -> None:
        with self.journal_file.open("a") as journal:
            journal.writelines(line + "\n" for line in lines)


@pytest.fixture
def node(tmp_path, monkeypatch):
    scripted = Node(tmp_path)
    monkeypatch.setenv("PATH", f"{scripted.bin}:/usr/bin:/bin")
    yield scripted
    scripted.server.shutdown()


def run_module(**args):
    return module_runner.run_module("vllm_wait_ready", {"poll_interval": 0.05, **args})


def test_waits_for_health_and_reports_the_phase(node, tmp_path):
    progress = tmp_path / "start.json"
    node.log(*VLLM_START_LOG[:2])
    timer = threading.Timer(0.5, node.healthy.set)
    timer.start()
    failed, result = run_module(url=node.url, timeout=10, progress_file=str(progress))
    timer.join()
    assert not failed and result["changed"] is False
    assert result["phase"] == "weights loaded, profiling memory"
    assert 0.4 <= result["elapsed"] < 10
    document = json.loads(progress.read_text())
    assert document["phase"] == "starting" and document["message"].startswith("healthy after")


def test_a_crash_during_start_up_fails_at_once_with_the_journal(node):
    node.log("RuntimeError: Device string must not be empty")
    threading.Timer(0.3, node.set_state, args=({**UP, "NRestarts": "1", "ExecMainStatus": "1"},)).start()
    failed, result = run_module(url=node.url, timeout=30)
    assert failed
    assert "exited (status 1) and systemd restarted it" in result["msg"]
    assert "Errors in its log: RuntimeError: Device string must not be empty." in result["msg"]
    assert result["errors"] == ["RuntimeError: Device string must not be empty"]


def test_the_timeout_names_the_last_phase(node, tmp_path):
    node.log(*VLLM_START_LOG[:3])
    progress = tmp_path / "start.json"
    failed, result = run_module(url=node.url, timeout=1, progress_file=str(progress))
    assert failed
    assert "within 1 s (last phase: KV cache allocated, compiling and warming up kernels)" in result["msg"]
    assert json.loads(progress.read_text())["message"].startswith("failed: no healthy answer")


def test_check_mode_writes_no_progress(node, tmp_path):
    node.healthy.set()
    progress = tmp_path / "start.json"
    failed, _ = run_module(url=node.url, progress_file=str(progress), _ansible_check_mode=True)
    assert not failed and not progress.exists()
