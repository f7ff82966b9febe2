"""The prometheus role's scrape configuration: one job per exporter, targets found in the inventory as
documented, and accepted by promtool when it is installed."""

import pathlib
import shutil
import subprocess

import pytest
import yaml

REPO = pathlib.Path(__file__).resolve().parents[3]
FACTS = {"default_ipv4": {"address": "10.20.0.6"}}
INVENTORY = {
    "inventory_hostname": "mon01",
    "groups": {"gpu_nodes": ["node01", "node02"], "loadbalancers": ["lb01"]},
    "hostvars": {
        # Facts gathered, nothing set: the roles' own default (the default IPv4 address).
        "node01": {"ansible_host": "10.20.0.11", "ansible_facts": {"default_ipv4": {"address": "10.30.0.11"}}},
        # Addresses and ports set in the inventory; 0.0.0.0 listens everywhere, so ansible_host reaches it.
        "node02": {"ansible_host": "10.20.0.12", "vllm_service_listen_address": "10.30.0.12",
                   "vllm_service_port": 9000, "metrics_exporters_node_listen_address": "0.0.0.0",
                   "metrics_exporters_node_port": 9200, "metrics_exporters_amd_gpu_port": 5050},
        "lb01": {"ansible_host": "10.20.0.5", "loadbalancer_stats_address": "10.20.0.5"},
    },
}


def _renderer(role_renderer, **overrides):
    return role_renderer("prometheus", FACTS, overrides={**INVENTORY, **overrides})


def _jobs(config_text: str) -> dict[str, list[tuple[str, str]]]:
    """job name -> [(target, instance label)]"""
    config = yaml.safe_load(config_text)
    return {job["job_name"]: [(target, static["labels"]["instance"]) for static in job["static_configs"]
                              for target in static["targets"]]
            for job in config["scrape_configs"]}


def test_every_exporter_is_scraped_under_the_inventory_name(role_renderer):
    config_text = _renderer(role_renderer).template("prometheus.yml.j2")
    assert yaml.safe_load(config_text)["global"] == {"scrape_interval": "15s", "evaluation_interval": "15s"}
    assert _jobs(config_text) == {
        "prometheus": [("10.20.0.6:9090", "mon01")],
        "vllm": [("10.30.0.11:8000", "node01"), ("10.30.0.12:9000", "node02")],
        "node": [("10.30.0.11:9100", "node01"), ("10.20.0.12:9200", "node02")],
        "haproxy": [("10.20.0.5:8404", "lb01")],
    }


def test_vllm_is_scraped_where_the_node_published_that_it_serves(role_renderer):
    """Its local fact vllm_service (docs/node-facts.md) wins over what the inventory says; the node exporter's
    address does not follow it."""
    published = {"address": "10.40.0.12", "port": 8123, "url": "http://10.40.0.12:8123"}
    hostvars = {**INVENTORY["hostvars"],
                "node02": {**INVENTORY["hostvars"]["node02"], "ansible_local": {"vllm_service": published}}}
    jobs = _jobs(_renderer(role_renderer, hostvars=hostvars).template("prometheus.yml.j2"))
    assert jobs["vllm"] == [("10.30.0.11:8000", "node01"), ("10.40.0.12:8123", "node02")]
    assert jobs["node"] == [("10.30.0.11:9100", "node01"), ("10.20.0.12:9200", "node02")]


def test_amd_gpu_exporter_is_scraped_only_when_asked(role_renderer):
    jobs = _jobs(_renderer(role_renderer, prometheus_scrape_amd_gpu_exporter=True).template("prometheus.yml.j2"))
    assert jobs["amd_gpu"] == [("10.30.0.11:5000", "node01"), ("10.20.0.12:5050", "node02")]


def test_load_balancers_without_stats_and_empty_groups_are_left_out(role_renderer):
    hostvars = {**INVENTORY["hostvars"], "lb01": {**INVENTORY["hostvars"]["lb01"], "loadbalancer_stats_enabled": False}}
    assert "haproxy" not in _jobs(_renderer(role_renderer, hostvars=hostvars).template("prometheus.yml.j2"))
    jobs = _jobs(_renderer(role_renderer, groups={"gpu_nodes": ["node01"]}).template("prometheus.yml.j2"))
    assert set(jobs) == {"prometheus", "vllm", "node"}


def test_alerts_go_to_the_alertmanagers_which_are_scraped_too(role_renderer):
    groups = {**INVENTORY["groups"], "monitoring": ["mon01", "mon02"]}
    """Alertmanager listens on loopback unless the inventory says otherwise, which only its own host reaches."""
    groups = {**INVENTORY["groups"], "monitoring": ["mon01", "mon02"]}
    hostvars = {**INVENTORY["hostvars"], "mon01": {"ansible_facts": {"default_ipv4": {"address": "10.20.0.6"}}},
                "mon02": {"ansible_host": "10.20.0.7", "alertmanager_listen_address": "0.0.0.0",
                          "alertmanager_port": 9095}}
    renderer = _renderer(role_renderer, groups=groups, hostvars=hostvars)
    config = yaml.safe_load(renderer.template("prometheus.yml.j2"))
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
    assert config["alerting"] == {"alertmanagers": [{"static_configs": [{"targets": ["127.0.0.1:9093",
                                                                                     "10.20.0.7:9095"]}]}]}
    assert _jobs(yaml.dump(config))["alertmanager"] == [("127.0.0.1:9093", "mon01"), ("10.20.0.7:9095", "mon02")]
    assert _reachability_check(renderer) == (True, [])
    passes, unreachable = _reachability_check(_renderer(role_renderer, groups=groups, hostvars=hostvars,
                                                        inventory_hostname="mon02"))
    assert not passes
    assert [(target["host"], target["address_variable"]) for target in unreachable] == [
        ("mon01", "alertmanager_listen_address")]


def test_without_alertmanagers_the_rules_are_still_evaluated(role_renderer):
    config = yaml.safe_load(_renderer(role_renderer).template("prometheus.yml.j2"))
    assert "alerting" not in config
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]


def test_tls_endpoints_are_probed_through_the_local_blackbox_exporter(role_renderer):
    """The blackbox exporter's multi-target pattern: the endpoint is the `target` parameter and the instance."""
    config = yaml.safe_load(_renderer(role_renderer, prometheus_tls_probe_targets=["lb01.example:443"],
                                      hostvars={**INVENTORY["hostvars"], "mon01": {"blackbox_exporter_port": 9116}}
                                      ).template("prometheus.yml.j2"))
    tls = next(job for job in config["scrape_configs"] if job["job_name"] == "tls")
    assert tls == {
        "job_name": "tls", "metrics_path": "/probe", "params": {"module": ["tls_certificate"]},
        "static_configs": [{"targets": ["lb01.example:443"]}],
        "relabel_configs": [{"source_labels": ["__address__"], "target_label": "__param_target"},
                            {"source_labels": ["__param_target"], "target_label": "instance"},
                            {"target_label": "__address__", "replacement": "127.0.0.1:9116"}]}
    assert "tls" not in _jobs(_renderer(role_renderer).template("prometheus.yml.j2"))


def _reachability_check(renderer) -> tuple[bool, list[dict]]:
    """The role's reachability assert evaluated as Ansible would: whether it passes, and the targets it names."""
    task = yaml.safe_load((REPO / "roles/prometheus/tasks/validate.yml").read_text())[0]
    passes = renderer.render("{{ " + task["ansible.builtin.assert"]["that"] + " }}", task["vars"])
    return passes, renderer.render("{{ __prometheus_unreachable }}", task["vars"])


def test_haproxy_stats_default_to_loopback_which_the_validation_refuses(role_renderer):
    """The loadbalancer role's stats default (127.0.0.1) is what Prometheus gets when the inventory sets nothing;
    Prometheus on another host could not scrape it."""
    hostvars = {**INVENTORY["hostvars"], "lb01": {"ansible_host": "10.20.0.5"}}
    renderer = _renderer(role_renderer, hostvars=hostvars)
    assert _jobs(renderer.template("prometheus.yml.j2"))["haproxy"] == [("127.0.0.1:8404", "lb01")]
    passes, unreachable = _reachability_check(renderer)
    assert not passes
    assert [(target["host"], target["address_variable"]) for target in unreachable] == [
        ("lb01", "loadbalancer_stats_address")]


def test_validation_accepts_reachable_targets_and_loopback_on_this_host(role_renderer):
    assert _reachability_check(_renderer(role_renderer)) == (True, [])
    on_this_host = {"inventory_hostname": "lb01", "groups": {"loadbalancers": ["lb01"]},
                    "hostvars": {"lb01": {"ansible_host": "10.20.0.5"}}}
    assert _reachability_check(_renderer(role_renderer, **on_this_host)) == (True, [])


def test_arguments_set_the_listen_address_and_retention(role_renderer):
    arguments = _renderer(role_renderer, prometheus_retention_time="30d", prometheus_port=9091).template(
        "prometheus.default.j2")
    assert 'ARGS="--web.listen-address=10.20.0.6:9091 --storage.tsdb.retention.time=30d"' in arguments.splitlines()


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="promtool is not installed (Debian package prometheus; scripts/setup-dev-host.sh)")
@pytest.mark.parametrize("overrides", [{}, {"prometheus_scrape_amd_gpu_exporter": True, "prometheus_listen_address":
                                            "0.0.0.0", "prometheus_scrape_interval": "30s"}],
                         ids=["defaults", "amd-gpu"])
def test_promtool_accepts_the_configuration(role_renderer, tmp_path, overrides):
    """With the rules it loads: promtool checks them too."""
    renderer = _renderer(role_renderer, _prometheus_rules_path=str(tmp_path / "alerts.yml"), **overrides)
    (tmp_path / "alerts.yml").write_text(renderer.template("alerts.yml.j2"))
    path = tmp_path / "prometheus.yml"
    path.write_text(renderer.template("prometheus.yml.j2"))
    result = subprocess.run(["promtool", "check", "config", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout + result.stderr


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="promtool is not installed (Debian package prometheus; scripts/setup-dev-host.sh)")
def test_promtool_refuses_a_bad_value(role_renderer, tmp_path):
    """The role's `validate: promtool check config` stops a wrong setting before it replaces a working one."""
    renderer = _renderer(role_renderer, prometheus_scrape_interval="often",
                         _prometheus_rules_path=str(tmp_path / "alerts.yml"))
    (tmp_path / "alerts.yml").write_text(renderer.template("alerts.yml.j2"))
    path = tmp_path / "prometheus.yml"
    path.write_text(renderer.template("prometheus.yml.j2"))
    result = subprocess.run(["promtool", "check", "config", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "often" in result.stdout + result.stderr
