"""Stopping vLLM on a node gets an alert to the operators: the stand-in for the issue's lab test, without
containers.

The real Prometheus and Alertmanager of the Debian packages run on loopback in a temporary directory, with the
configuration, rules and arguments the prometheus and alertmanager roles render (only the addresses, intervals and
the `for:` of VllmTargetDown shortened). A vLLM stand-in (this file run as a module) serves vLLM 0.33's /metrics,
and the test runs the webhook receiver Alertmanager posts to. The test stops the stand-in and waits for the
VllmTargetDown notification, then starts it again and waits for the resolved one.
"""

import argparse
import http.server
import json
import pathlib
import queue
import shlex
import shutil
import socket
import subprocess
import threading
import time

import pytest
import requests

from lab.standin_process import StandinProcess
from lab.vllm.standin.metrics import Metrics  # the metrics text of lab's vLLM 0.33 stand-in

PROMETHEUS = shutil.which("prometheus")
ALERTMANAGER = shutil.which("prometheus-alertmanager")
pytestmark = pytest.mark.skipif(
    PROMETHEUS is None or ALERTMANAGER is None,
    reason="needs Debian's prometheus and prometheus-alertmanager (scripts/setup-dev-host.sh)")
FACTS = {"default_ipv4": {"address": "127.0.0.1"}}
# From the stand-in's stop to the notification: a failed scrape (1 s), VllmTargetDown pending for 2 s, Prometheus's
# next evaluation (1 s) and Alertmanager's group_wait (1 s), with room for a loaded machine.
DELIVERY_TIMEOUT = 30


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _arguments(rendered_default_file: str) -> list[str]:
    """The ARGS of a rendered /etc/default file, split at whitespace as systemd splits an unquoted $ARGS."""
    line = next(line for line in rendered_default_file.splitlines() if line.startswith("ARGS="))
    return shlex.split(line.removeprefix("ARGS="))[0].split()


class WebhookReceiver:
    """An HTTP server that keeps every JSON body POSTed to it, as a chat bridge or paging service would get them."""

    def __init__(self):
        self.notifications: queue.Queue = queue.Queue()
        received = self.notifications

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                received.put(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def next_notification(self, timeout: float) -> dict:
        try:
            return self.notifications.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no notification within {timeout} s") from None

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class Server:
    """A binary in the foreground, its output in a log file; waits until `ready_url` answers 200."""

    def __init__(self, argv: list[str], log_path: pathlib.Path, ready_url: str):
        self.log_path = log_path
        with log_path.open("w") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while not self._ready(ready_url):
            assert self.process.poll() is None, f"{argv[0]} exited, see {log_path}"
            assert time.monotonic() < deadline, f"{argv[0]} was not ready within 20 s, see {log_path}"
            time.sleep(0.1)

    @staticmethod
    def _ready(url: str) -> bool:
        try:
            return requests.get(url, timeout=1).status_code == 200
        except requests.ConnectionError:
            return False

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


class VllmStandin:
    """This file run as a module: vLLM's /metrics on a loopback port (a given one, to come back where it was)."""

    def __init__(self, tmp_path: pathlib.Path, port: int = 0):
        self.process = StandinProcess("tests.unit.roles.test_alert_delivery", ["--port", str(port)],
                                      tmp_path / "vllm.log")
        self.port = int(self.process.url.rsplit(":", 1)[1])

    def stop(self):
        self.process.stop()


def _query(prometheus: str, expression: str) -> list[dict]:
    answer = requests.get(f"{prometheus}/api/v1/query", params={"query": expression}, timeout=5).json()
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def _wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} within {timeout} s"
        time.sleep(0.2)


def test_stopping_vllm_on_a_node_sends_the_alert_to_the_webhook_and_starting_it_resolves_it(
        role_renderer, tmp_path, started):
    receiver = started(WebhookReceiver)
    vllm = started(VllmStandin, tmp_path)

    alertmanager_port = _free_port()
    alertmanager_role = role_renderer("alertmanager", FACTS, overrides={
        "alertmanager_webhook_urls": [receiver.url], "alertmanager_listen_address": "127.0.0.1",
        "alertmanager_port": alertmanager_port, "alertmanager_group_wait": "1s", "alertmanager_group_interval": "1s",
        "_alertmanager_config_path": str(tmp_path / "alertmanager.yml")})
    (tmp_path / "alertmanager.yml").write_text(alertmanager_role.template("alertmanager.yml.j2"))
    alertmanager_url = f"http://127.0.0.1:{alertmanager_port}"
    started(Server, [ALERTMANAGER, *_arguments(alertmanager_role.template("prometheus-alertmanager.default.j2")),
                     f"--storage.path={tmp_path / 'alertmanager'}"],
            tmp_path / "alertmanager.log", f"{alertmanager_url}/-/ready")
    # The role's arguments keep it from gossiping on port 9094 of every interface, Debian's default.
    assert requests.get(f"{alertmanager_url}/api/v2/status", timeout=5).json()["cluster"]["status"] == "disabled"

    prometheus_port = _free_port()
    prometheus_role = role_renderer("prometheus", FACTS, overrides={
        "inventory_hostname": "mon01",
        "groups": {"gpu_nodes": ["node01"], "monitoring": ["mon01"]},
        # No node exporter here: its target stays down, and ScrapeTargetDown would wait 5 minutes.
        "hostvars": {"node01": {"vllm_service_listen_address": "127.0.0.1", "vllm_service_port": vllm.port,
                                "metrics_exporters_node_listen_address": "127.0.0.1",
                                "metrics_exporters_node_port": _free_port()},
                     "mon01": {"alertmanager_listen_address": "127.0.0.1", "alertmanager_port": alertmanager_port}},
        "prometheus_listen_address": "127.0.0.1", "prometheus_port": prometheus_port,
        "prometheus_scrape_interval": "1s", "prometheus_evaluation_interval": "1s",
        "prometheus_alert_vllm_down_for": "2s", "_prometheus_rules_path": str(tmp_path / "alerts.yml")})
    (tmp_path / "alerts.yml").write_text(prometheus_role.template("alerts.yml.j2"))
    (tmp_path / "prometheus.yml").write_text(prometheus_role.template("prometheus.yml.j2"))
    prometheus_url = f"http://127.0.0.1:{prometheus_port}"
    started(Server, [PROMETHEUS, *_arguments(prometheus_role.template("prometheus.default.j2")),
                     f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}"],
            tmp_path / "prometheus.log", f"{prometheus_url}/-/ready")

    # Serving: vLLM is scraped, the rules are evaluated, and nobody is notified.
    _wait_for(lambda: [sample["value"][1] for sample in _query(prometheus_url, 'up{job="vllm"}')] == ["1"], 20,
              "Prometheus did not scrape the vLLM stand-in")
    _wait_for(lambda: _query(prometheus_url, 'vllm:num_requests_waiting{instance="node01"}'), 10,
              "vLLM's metrics did not arrive")
    _wait_for(lambda: _query(prometheus_url, 'ALERTS{alertname="ScrapeTargetDown"}'), 10,
              "the rules were not evaluated (ScrapeTargetDown of the missing node exporter is not pending)")
    assert receiver.notifications.empty()

    vllm.stop()
    stopped_at = time.monotonic()
    firing = receiver.next_notification(DELIVERY_TIMEOUT)
    assert firing["status"] == "firing"
    assert firing["receiver"] == "webhooks"
    assert [alert["labels"] for alert in firing["alerts"]] == [
        {"alertname": "VllmTargetDown", "instance": "node01", "job": "vllm", "severity": "warning"}]
    assert firing["alerts"][0]["annotations"]["summary"] == "vLLM on node01 does not answer on /metrics"
    assert firing["alerts"][0]["annotations"]["runbook_url"] == "docs/runbooks/alerts.md#vllmtargetdown"
    # Not before the rule's `for:` has passed.
    assert time.monotonic() - stopped_at >= 2

    started(VllmStandin, tmp_path, port=vllm.port)
    resolved = receiver.next_notification(DELIVERY_TIMEOUT)
    assert resolved["status"] == "resolved"
    assert [(alert["labels"]["alertname"], alert["status"]) for alert in resolved["alerts"]] == [
        ("VllmTargetDown", "resolved")]


# --- the vLLM stand-in ------------------------------------------------------------------------------------------

def _serve(host: str, port: int) -> None:
    metrics = Metrics("deepseek-ai/DeepSeek-V3.2", 163840)

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            if self.path != "/metrics":
                self.send_error(404)
                return
            body = metrics.render(running=0, waiting=0, kv_usage=0.0).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer((host, port), Handler)
    print(f"READY http://{host}:{server.server_port}", flush=True)
    server.serve_forever()  # until the test's SIGTERM


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="vLLM's /metrics for the alert delivery test")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    arguments = parser.parse_args()
    _serve(arguments.host, arguments.port)
