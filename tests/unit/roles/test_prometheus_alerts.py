"""The prometheus role's alert rules: each one fires on the series it watches and stays quiet otherwise
(`promtool test rules` against the rendered rules, with the role's default thresholds), the groups follow the
scrape jobs, and the role refuses bad thresholds and durations before anything is written."""

import pathlib
import re
import shutil
import subprocess

import pytest
import yaml

REPO = pathlib.Path(__file__).resolve().parents[3]
FACTS = {"default_ipv4": {"address": "10.20.0.6"}}
INVENTORY = {
    "inventory_hostname": "mon01",
    "groups": {"gpu_nodes": ["node01", "node02", "node03"], "loadbalancers": ["lb01"], "monitoring": ["mon01"]},
    "hostvars": {"node01": {}, "node02": {}, "node03": {}, "lb01": {"loadbalancer_stats_address": "10.20.0.5"},
                 "mon01": {}},
}
# Every group of rules: AMD's exporter scraped, TLS endpoints probed.
EVERYTHING = {"prometheus_scrape_amd_gpu_exporter": True, "prometheus_tls_probe_targets": ["lb01:443", "lb02:443"]}
RUNBOOK = REPO / "docs" / "runbooks" / "alerts.md"
MODEL = "model_name='deepseek-ai/DeepSeek-V3.2'"  # the label vLLM puts on its metrics

needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None,
    reason="promtool is not installed (Debian package prometheus; scripts/setup-dev-host.sh)")


def _renderer(role_renderer, **overrides):
    return role_renderer("prometheus", FACTS, overrides={**INVENTORY, **overrides})


def _rules(role_renderer, **overrides) -> dict:
    return yaml.safe_load(_renderer(role_renderer, **overrides).template("alerts.yml.j2"))


def _alert_names(rules: dict) -> dict[str, list[str]]:
    """group name -> its alerts"""
    return {group["name"]: [rule["alert"] for rule in group["rules"]] for group in rules["groups"]}


def _alert(name: str, labels: dict, summary: str, description: str) -> dict:
    """An alert as promtool expects it to fire: every label and annotation."""
    return {"exp_labels": labels, "exp_annotations": {
        "summary": summary, "description": description, "runbook_url": f"docs/runbooks/alerts.md#{name.lower()}"}}


# alert -> (input series, [(evaluation time, alerts firing then)]); one-minute steps, the role's defaults.
CASES = {
    "VllmTargetDown": (
        [("up{job='vllm', instance='node01'}", "1 1 0 0 0 0"),
         ("up{job='vllm', instance='node02'}", "1 1 1 1 1 1")],
        [("3m", []),  # down for a minute: pending
         ("4m", [_alert("VllmTargetDown", {"job": "vllm", "instance": "node01", "severity": "warning"},
                        "vLLM on node01 does not answer on /metrics",
                        "Prometheus has not scraped vLLM on node01 for 2m: the service is stopped, restarting "
                        "(loading the weights) or crashed. The load balancer sends its requests to the other "
                        "nodes.")])]),
    "VllmRequestsWaiting": (
        # node01's two engines keep 3 requests waiting between them; node02's queue empties now and then.
        [("vllm:num_requests_waiting{job='vllm', instance='node01', engine='0', " + MODEL + "}",
          "0 2x12"),
         ("vllm:num_requests_waiting{job='vllm', instance='node01', engine='1', " + MODEL + "}",
          "0 1x12"),
         ("vllm:num_requests_waiting{job='vllm', instance='node02', engine='0', " + MODEL + "}",
          "5 5 5 5 5 0 5 5 5 5 5 5 5")],
        [("10m", []),
         ("11m", [_alert("VllmRequestsWaiting", {"job": "vllm", "instance": "node01", "severity": "warning"},
                         "3 requests are waiting on node01",
                         "vLLM's queue on node01 has held more than 0 requests for 10m: requests arrive faster "
                         "than the node serves them, and clients wait before their first token.")])]),
    "VllmKvCacheNearlyFull": (
        [("vllm:kv_cache_usage_perc{job='vllm', instance='node01', engine='0', " + MODEL + "}",
          "0.5 0.97x12"),
         ("vllm:kv_cache_usage_perc{job='vllm', instance='node02', engine='0', " + MODEL + "}",
          "0.9x12")],
        [("10m", []),
         ("11m", [_alert("VllmKvCacheNearlyFull", {"job": "vllm", "instance": "node01", "severity": "warning"},
                         "vLLM's KV cache on node01 is 97% full",
                         "More than 95% of the KV cache on node01 has been in use for 10m: new requests wait and "
                         "running ones get preempted.")])]),
    "HaproxyNoHealthyBackend": (
        # lb02 still has a backup server.
        [("haproxy_backend_active_servers{job='haproxy', instance='lb01', proxy='vllm'}", "2 2 0 0 0"),
         ("haproxy_backend_backup_servers{job='haproxy', instance='lb01', proxy='vllm'}", "0 0 0 0 0"),
         ("haproxy_backend_active_servers{job='haproxy', instance='lb02', proxy='vllm'}", "0 0 0 0 0"),
         ("haproxy_backend_backup_servers{job='haproxy', instance='lb02', proxy='vllm'}", "1 1 1 1 1")],
        [("2m", []),
         ("3m", [_alert("HaproxyNoHealthyBackend",
                        {"job": "haproxy", "instance": "lb01", "proxy": "vllm", "severity": "critical"},
                        "HAProxy on lb01 has no server for backend vllm",
                        "Every server of backend vllm on lb01 has been down, drained or in maintenance for 1m: "
                        "clients get 503.")])]),
    "Haproxy5xxRateHigh": (
        # lb01: 10 % of the responses are 5xx; lb02: 1 %; lb03: no traffic at all.
        [("haproxy_backend_http_responses_total{job='haproxy', instance='lb01', proxy='vllm', code='2xx'}",
          "0+90x20"),
         ("haproxy_backend_http_responses_total{job='haproxy', instance='lb01', proxy='vllm', code='5xx'}",
          "0+10x20"),
         ("haproxy_backend_http_responses_total{job='haproxy', instance='lb02', proxy='vllm', code='2xx'}",
          "0+99x20"),
         ("haproxy_backend_http_responses_total{job='haproxy', instance='lb02', proxy='vllm', code='5xx'}",
          "0+1x20"),
         ("haproxy_backend_http_responses_total{job='haproxy', instance='lb03', proxy='vllm', code='2xx'}", "0x20"),
         ("haproxy_backend_http_responses_total{job='haproxy', instance='lb03', proxy='vllm', code='5xx'}", "0x20")],
        [("5m", []),
         ("10m", [_alert("Haproxy5xxRateHigh",
                         {"job": "haproxy", "instance": "lb01", "proxy": "vllm", "severity": "critical"},
                         "10% of backend vllm's responses on lb01 are 5xx",
                         "More than 5% of the responses of backend vllm on lb01 over 5 minutes have been server "
                         "errors, for 5m.")])]),
    "HfCacheDiskNearlyFull": (
        # The cache is at /srv/huggingface. node01: /srv is nearly full. node02: / is nearly full but the cache's
        # own filesystem is not. node03: no separate filesystem, / holds the cache and is nearly full.
        [("node_filesystem_avail_bytes{job='node', instance='node01', mountpoint='/', device='/dev/sda1', "
          "fstype='ext4'}", "50x12"),
         ("node_filesystem_size_bytes{job='node', instance='node01', mountpoint='/', device='/dev/sda1', "
          "fstype='ext4'}", "100x12"),
         ("node_filesystem_avail_bytes{job='node', instance='node01', mountpoint='/srv', device='/dev/nvme0n1', "
          "fstype='xfs'}", "5x12"),
         ("node_filesystem_size_bytes{job='node', instance='node01', mountpoint='/srv', device='/dev/nvme0n1', "
          "fstype='xfs'}", "100x12"),
         ("node_filesystem_avail_bytes{job='node', instance='node02', mountpoint='/', device='/dev/sda1', "
          "fstype='ext4'}", "5x12"),
         ("node_filesystem_size_bytes{job='node', instance='node02', mountpoint='/', device='/dev/sda1', "
          "fstype='ext4'}", "100x12"),
         ("node_filesystem_avail_bytes{job='node', instance='node02', mountpoint='/srv/huggingface', "
          "device='/dev/nvme0n1', fstype='xfs'}", "60x12"),
         ("node_filesystem_size_bytes{job='node', instance='node02', mountpoint='/srv/huggingface', "
          "device='/dev/nvme0n1', fstype='xfs'}", "100x12"),
         ("node_filesystem_avail_bytes{job='node', instance='node03', mountpoint='/', device='/dev/sda1', "
          "fstype='ext4'}", "8x12"),
         ("node_filesystem_size_bytes{job='node', instance='node03', mountpoint='/', device='/dev/sda1', "
          "fstype='ext4'}", "100x12"),
         ("node_filesystem_avail_bytes{job='node', instance='node03', mountpoint='/boot', device='/dev/sda2', "
          "fstype='ext4'}", "1x12"),
         ("node_filesystem_size_bytes{job='node', instance='node03', mountpoint='/boot', device='/dev/sda2', "
          "fstype='ext4'}", "100x12")],
        [("5m", []),
         ("10m", [
             _alert("HfCacheDiskNearlyFull",
                    {"job": "node", "instance": "node01", "mountpoint": "/srv", "device": "/dev/nvme0n1",
                     "fstype": "xfs", "severity": "warning"},
                    "Only 5% is free on /srv, the HF cache's filesystem on node01",
                    "Less than 10% of /srv (/dev/nvme0n1) on node01 has been free for 10m: the next revision of the "
                    "weights (about 690 GB) may not fit."),
             _alert("HfCacheDiskNearlyFull",
                    {"job": "node", "instance": "node03", "mountpoint": "/", "device": "/dev/sda1",
                     "fstype": "ext4", "severity": "warning"},
                    "Only 8% is free on /, the HF cache's filesystem on node03",
                    "Less than 10% of / (/dev/sda1) on node03 has been free for 10m: the next revision of the "
                    "weights (about 690 GB) may not fit.")])]),
    "TlsCertificateExpiringSoon": (
        # Expiry dates as Unix times; the test's clock starts at 0. lb02's is 30 days away.
        [("probe_ssl_earliest_cert_expiry{job='tls', instance='lb01:443'}", "864000x3"),
         ("probe_ssl_earliest_cert_expiry{job='tls', instance='lb02:443'}", "2592000x3")],
        [("1m", [_alert("TlsCertificateExpiringSoon", {"job": "tls", "instance": "lb01:443", "severity": "warning"},
                        "The certificate of lb01:443 expires in 9d 23h 59m 0s",
                        "A certificate that lb01:443 sends expires in less than 14 days. Clients will refuse the "
                        "connection once it has.")])]),
    "TlsProbeFailing": (
        [("probe_success{job='tls', instance='lb01:443'}", "0x12"),
         ("probe_success{job='tls', instance='lb02:443'}", "1x12")],
        [("9m", []),
         ("10m", [_alert("TlsProbeFailing", {"job": "tls", "instance": "lb01:443", "severity": "warning"},
                         "No TLS handshake with lb01:443",
                         "The blackbox exporter has not completed a TLS handshake with lb01:443 for 10m: the endpoint "
                         "is down or does not serve TLS, and its certificate's expiry is not watched meanwhile.")])]),
    "GpuJunctionTemperatureHigh": (
        [("gpu_junction_temperature{job='amd_gpu', instance='node01', gpu_id='3', serial_number='SN3', "
          "card_model='MI300X', hostname='node01'}", "80 97x8"),
         ("gpu_junction_temperature{job='amd_gpu', instance='node01', gpu_id='4', serial_number='SN4', "
          "card_model='MI300X', hostname='node01'}", "90x8")],
        [("5m", []),
         ("6m", [_alert("GpuJunctionTemperatureHigh",
                        {"job": "amd_gpu", "instance": "node01", "gpu_id": "3", "serial_number": "SN3",
                         "card_model": "MI300X", "hostname": "node01", "severity": "warning"},
                        "GPU 3 of node01 is at 97 °C (hotspot)",
                        "The junction (hotspot) temperature of GPU 3 (serial SN3) on node01 has been above 95 °C for "
                        "5m.")])]),
    "GpuMemoryTemperatureHigh": (
        [("gpu_memory_temperature{job='amd_gpu', instance='node02', gpu_id='0', serial_number='SN0', "
          "card_model='MI300X', hostname='node02'}", "70 88x8"),
         ("gpu_memory_temperature{job='amd_gpu', instance='node02', gpu_id='1', serial_number='SN1', "
          "card_model='MI300X', hostname='node02'}", "80x8")],
        [("5m", []),
         ("6m", [_alert("GpuMemoryTemperatureHigh",
                        {"job": "amd_gpu", "instance": "node02", "gpu_id": "0", "serial_number": "SN0",
                         "card_model": "MI300X", "hostname": "node02", "severity": "warning"},
                        "GPU 0 of node02 has its memory at 88 °C",
                        "The memory (HBM) temperature of GPU 0 (serial SN0) on node02 has been above 85 °C for "
                        "5m.")])]),
    "GpuUncorrectableEccErrors": (
        [("gpu_ecc_uncorrect_total{job='amd_gpu', instance='node01', gpu_id='5', serial_number='SN5', "
          "card_model='MI300X', hostname='node01'}", "0 0 2 2"),
         ("gpu_ecc_uncorrect_total{job='amd_gpu', instance='node01', gpu_id='6', serial_number='SN6', "
          "card_model='MI300X', hostname='node01'}", "0 0 0 0")],
        [("1m", []),
         ("2m", [_alert("GpuUncorrectableEccErrors",
                        {"job": "amd_gpu", "instance": "node01", "gpu_id": "5", "serial_number": "SN5",
                         "card_model": "MI300X", "hostname": "node01", "severity": "critical"},
                        "GPU 5 of node01 has had 2 uncorrectable ECC errors",
                        "GPU 5 (serial SN5) on node01 reports uncorrectable memory errors since its driver loaded: "
                        "its results can no longer be trusted.")])]),
    "ScrapeTargetDown": (
        # vLLM's own alert covers it.
        [("up{job='node', instance='node01'}", "0x8"),
         ("up{job='haproxy', instance='lb01'}", "1x8"),
         ("up{job='vllm', instance='node02'}", "0x8")],
        [("4m", []),
         ("5m", [_alert("ScrapeTargetDown", {"job": "node", "instance": "node01", "severity": "warning"},
                        "node on node01 does not answer",
                        "Prometheus has not scraped node on node01 for 5m: the alerts that need its metrics cannot "
                        "fire meanwhile.")])]),
}


@needs_promtool
@pytest.mark.parametrize("alert", sorted(CASES))
def test_the_alert_fires_on_what_it_watches_and_only_then(role_renderer, tmp_path, alert):
    series, checks = CASES[alert]
    (tmp_path / "alerts.yml").write_text(_renderer(role_renderer, **EVERYTHING).template("alerts.yml.j2"))
    (tmp_path / "test.yml").write_text(yaml.safe_dump({
        "rule_files": ["alerts.yml"],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [{"series": name.replace("'", '"'), "values": values} for name, values in series],
            "alert_rule_test": [{"eval_time": time, "alertname": alert, "exp_alerts": expected}
                                for time, expected in checks],
        }],
    }, sort_keys=False))
    result = subprocess.run(["promtool", "test", "rules", "test.yml"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_every_rule_has_a_unit_test_and_a_runbook_section(role_renderer):
    alerts = {name for names in _alert_names(_rules(role_renderer, **EVERYTHING)).values() for name in names}
    assert alerts == set(CASES)
    sections = {line[3:].strip() for line in RUNBOOK.read_text().splitlines() if line.startswith("## ")}
    assert alerts <= sections, f"no section in {RUNBOOK.name} for {sorted(alerts - sections)}"


def test_gpu_and_tls_rules_only_where_their_metrics_are_collected(role_renderer):
    assert list(_alert_names(_rules(role_renderer))) == ["vllm", "loadbalancer", "node", "targets"]
    assert _alert_names(_rules(role_renderer, **EVERYTHING)) == {
        "vllm": ["VllmTargetDown", "VllmRequestsWaiting", "VllmKvCacheNearlyFull"],
        "loadbalancer": ["HaproxyNoHealthyBackend", "Haproxy5xxRateHigh"],
        "node": ["HfCacheDiskNearlyFull"],
        "tls": ["TlsCertificateExpiringSoon", "TlsProbeFailing"],
        "amd_gpu": ["GpuJunctionTemperatureHigh", "GpuMemoryTemperatureHigh", "GpuUncorrectableEccErrors"],
        "targets": ["ScrapeTargetDown"],
    }


def _rule(rules: dict, alert: str) -> dict:
    return next(rule for group in rules["groups"] for rule in group["rules"] if rule["alert"] == alert)


def test_thresholds_durations_and_runbook_come_from_the_variables(role_renderer):
    rules = _rules(role_renderer, prometheus_alert_vllm_down_for="30s", prometheus_alert_kv_cache_usage=0.9,
                   prometheus_alert_5xx_ratio=0.2, prometheus_alert_runbook_url="https://git.example/alerts.md")
    assert _rule(rules, "VllmTargetDown")["for"] == "30s"
    assert _rule(rules, "VllmTargetDown")["annotations"]["runbook_url"] == (
        "https://git.example/alerts.md#vllmtargetdown")
    assert _rule(rules, "VllmKvCacheNearlyFull")["expr"].endswith("> 0.9")
    assert _rule(rules, "Haproxy5xxRateHigh")["expr"].rstrip().endswith("> 0.2")


def _hf_cache_selectors(expr: str) -> list[tuple[str, str]]:
    """(instance matcher, mount point) of each filesystem the rule reads, in order."""
    return re.findall(r'node_filesystem_avail_bytes\{job="node", (?:instance=~`([^`]*)`, )?mountpoint="([^"]*)"\}',
                      expr)


def test_hf_cache_rule_looks_at_each_nodes_own_path(role_renderer):
    """Each node is judged by the mount points of its own model_weights_hf_home, deepest first."""
    assert _hf_cache_selectors(_rule(_rules(role_renderer), "HfCacheDiskNearlyFull")["expr"]) == [
        ("", "/srv/huggingface"), ("", "/srv"), ("", "/")]
    hostvars = {**INVENTORY["hostvars"], "node02": {"model_weights_hf_home": "/data/hf/"},
                "node03.example": {"model_weights_hf_home": "/data/hf"}}
    groups = {**INVENTORY["groups"], "gpu_nodes": ["node01", "node02", "node03.example"]}
    rule = _rule(_rules(role_renderer, hostvars=hostvars, groups=groups), "HfCacheDiskNearlyFull")
    assert _hf_cache_selectors(rule["expr"]) == [
        ("node01", "/srv/huggingface"), ("node01", "/srv"), ("node01", "/"),
        (r"node02|node03\.example", "/data/hf"), (r"node02|node03\.example", "/data"),
        (r"node02|node03\.example", "/")]


@needs_promtool
@pytest.mark.parametrize("overrides", [{}, EVERYTHING, {"hostvars": {"node01": {"model_weights_hf_home": "/x"}}}],
                         ids=["defaults", "everything", "two-cache-paths"])
def test_promtool_accepts_the_rules(role_renderer, tmp_path, overrides):
    path = tmp_path / "alerts.yml"
    path.write_text(_renderer(role_renderer, **overrides).template("alerts.yml.j2"))
    result = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_refuses_a_bad_duration(role_renderer, tmp_path):
    """What the role's `validate: promtool check rules` stops when the role's own check is bypassed."""
    path = tmp_path / "alerts.yml"
    path.write_text(_renderer(role_renderer, prometheus_alert_vllm_down_for="soon").template("alerts.yml.j2"))
    result = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "soon" in result.stdout + result.stderr


def _validation(renderer) -> dict[str, str]:
    """The failure message of each of the role's checks that fails, by task name."""
    failures = {}
    for task in yaml.safe_load((REPO / "roles/prometheus/tasks/validate.yml").read_text()):
        check = task["ansible.builtin.assert"]
        if not renderer.render("{{ " + check["that"] + " }}", task.get("vars")):
            failures[task["name"]] = renderer.render(check["fail_msg"], task.get("vars"))
    return failures


def test_the_defaults_pass_the_checks(role_renderer):
    assert _validation(_renderer(role_renderer, **EVERYTHING)) == {}


DURATIONS = sorted(name for name in yaml.safe_load((REPO / "roles/prometheus/defaults/main.yml").read_text())
                   if name.endswith("_for") or name == "prometheus_evaluation_interval")


@pytest.mark.parametrize("variable", DURATIONS)
def test_a_bad_duration_is_refused_by_name(role_renderer, variable):
    failures = _validation(_renderer(role_renderer, **{variable: "5 minutes"}))
    assert failures == {"Check the alert rules' durations": f'{variable} is "5 minutes": not a Prometheus duration. '
                                                            "Give a number and a unit, such as 30s, 5m, 1h or 1h30m."}


@pytest.mark.parametrize(("overrides", "expected"), [
    ({"prometheus_alert_kv_cache_usage": 95}, "prometheus_alert_kv_cache_usage is a share from 0 to 1 (0.95 for 95%), "
                                              "not 95."),
    ({"prometheus_alert_5xx_ratio": 0}, "prometheus_alert_5xx_ratio is a share from 0 to 1 (0.95 for 95%), not 0."),
    ({"prometheus_alert_hf_cache_free_percent": 100}, "prometheus_alert_hf_cache_free_percent is a percent between 0 "
                                                      "and 100, not 100."),
    ({"prometheus_alert_vllm_waiting_requests": -1}, "prometheus_alert_vllm_waiting_requests cannot be negative."),
    ({"prometheus_alert_certificate_expiry_days": 0}, "prometheus_alert_certificate_expiry_days must be 1 or more."),
], ids=["kv-cache-percent", "5xx-zero", "hf-cache-100", "waiting-negative", "expiry-zero"])
def test_a_bad_threshold_is_refused_by_name(role_renderer, overrides, expected):
    assert _validation(_renderer(role_renderer, **overrides)) == {"Check the alert rules' thresholds": expected}


def test_tls_targets_must_be_host_and_port(role_renderer):
    targets = ["lb01.example.com:443", "10.20.0.5:8443", "[2001:db8::5]:443", "https://lb01:443", "lb01",
               "lb01:443/health"]
    failures = _validation(_renderer(role_renderer, prometheus_tls_probe_targets=targets))
    assert list(failures) == ["Check the TLS endpoints to probe"]
    assert failures["Check the TLS endpoints to probe"].startswith(
        'prometheus_tls_probe_targets holds "https://lb01:443", "lb01", "lb01:443/health": each entry is host:port')
