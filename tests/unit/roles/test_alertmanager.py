"""The alertmanager role: every alert routed to every webhook URL, the arguments that keep it off the network and
out of a cluster, amtool's verdict on the rendered file, and the role's checks, which never print a URL."""

import pathlib
import shutil
import subprocess

import pytest
import yaml

REPO = pathlib.Path(__file__).resolve().parents[3]
ROLE = REPO / "roles" / "alertmanager"
FACTS = {"default_ipv4": {"address": "10.20.0.6"}}
URLS = ["https://hooks.example/services/T000/B000/s3cr3t-token", "http://10.20.0.9:9000/alerts"]

needs_amtool = pytest.mark.skipif(
    shutil.which("amtool") is None,
    reason="amtool is not installed (Debian package prometheus-alertmanager; scripts/setup-dev-host.sh)")


def _renderer(role_renderer, **overrides):
    return role_renderer("alertmanager", FACTS, overrides={"alertmanager_webhook_urls": URLS, **overrides})


def test_every_alert_goes_to_every_url_grouped(role_renderer):
    config = yaml.safe_load(_renderer(role_renderer).template("alertmanager.yml.j2"))
    assert config == {
        "route": {"receiver": "webhooks", "group_by": ["alertname"], "group_wait": "30s", "group_interval": "5m",
                  "repeat_interval": "4h"},
        "receivers": [{"name": "webhooks", "webhook_configs": [{"url": URLS[0], "send_resolved": True},
                                                               {"url": URLS[1], "send_resolved": True}]}],
    }


def test_grouping_comes_from_the_variables(role_renderer):
    route = yaml.safe_load(_renderer(role_renderer, alertmanager_group_by=["alertname", "instance"],
                                     alertmanager_group_wait="10s", alertmanager_group_interval="1m",
                                     alertmanager_repeat_interval="12h").template("alertmanager.yml.j2"))["route"]
    assert route == {"receiver": "webhooks", "group_by": ["alertname", "instance"], "group_wait": "10s",
                     "group_interval": "1m", "repeat_interval": "12h"}


def test_arguments_keep_it_on_loopback_and_out_of_a_cluster(role_renderer):
    arguments = _renderer(role_renderer).template("prometheus-alertmanager.default.j2").splitlines()
    assert ('ARGS="--config.file=/etc/prometheus/alertmanager.yml --web.listen-address=127.0.0.1:9093 '
            '--cluster.listen-address="') in arguments
    arguments = _renderer(role_renderer, alertmanager_listen_address="10.20.0.6", alertmanager_port=9193).template(
        "prometheus-alertmanager.default.j2")
    assert "--web.listen-address=10.20.0.6:9193 " in arguments


def test_the_file_with_the_urls_is_private_and_never_logged():
    task = yaml.safe_load((ROLE / "tasks" / "configure.yml").read_text())[0]
    assert task["no_log"] is True
    assert task["ansible.builtin.template"]["mode"] == "0640"
    assert task["ansible.builtin.template"]["validate"] == "amtool check-config %s"


def test_the_arguments_are_in_place_before_the_package_starts_the_service():
    """Debian's package starts Alertmanager on install: with its own arguments it would listen everywhere."""
    tasks = yaml.safe_load((ROLE / "tasks" / "install.yml").read_text())
    modules = [next(key for key in task if key.startswith("ansible.builtin.")) for task in tasks]
    assert modules == ["ansible.builtin.template", "ansible.builtin.apt"]
    assert tasks[0]["ansible.builtin.template"]["src"] == "prometheus-alertmanager.default.j2"


def _amtool_check(config: str, tmp_path: pathlib.Path) -> subprocess.CompletedProcess:
    path = tmp_path / "alertmanager.yml"
    path.write_text(config)
    return subprocess.run(["amtool", "check-config", str(path)], capture_output=True, text=True, timeout=60)


@needs_amtool
@pytest.mark.parametrize("overrides", [{}, {"alertmanager_webhook_urls": URLS[:1], "alertmanager_group_by": [
    "alertname", "instance"], "alertmanager_repeat_interval": "1d"}], ids=["defaults", "overrides"])
def test_amtool_accepts_the_configuration(role_renderer, tmp_path, overrides):
    result = _amtool_check(_renderer(role_renderer, **overrides).template("alertmanager.yml.j2"), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 receivers" in result.stdout


@needs_amtool
def test_amtool_refuses_a_bad_value(role_renderer, tmp_path):
    """The role's `validate: amtool check-config` stops a wrong setting before it replaces a working one."""
    result = _amtool_check(_renderer(role_renderer, alertmanager_group_wait="soon").template("alertmanager.yml.j2"),
                           tmp_path)
    assert result.returncode != 0
    assert "soon" in result.stdout + result.stderr


def _validation(renderer) -> dict[str, str]:
    """The failure message of each of the role's checks that fails, by task name."""
    failures = {}
    for task in yaml.safe_load((ROLE / "tasks" / "validate.yml").read_text()):
        check = task["ansible.builtin.assert"]
        if not renderer.render("{{ " + check["that"] + " }}", task.get("vars")):
            failures[task["name"]] = renderer.render(check["fail_msg"], task.get("vars"))
    return failures


def test_valid_settings_pass(role_renderer):
    assert _validation(_renderer(role_renderer)) == {}


def test_no_url_is_refused(role_renderer):
    failures = _validation(_renderer(role_renderer, alertmanager_webhook_urls=[]))
    assert list(failures) == ["Check that the alerts go somewhere"]
    assert failures["Check that the alerts go somewhere"].startswith(
        "alertmanager_webhook_urls is empty: Alertmanager would receive the alerts and notify nobody.")


def test_bad_urls_are_named_by_position_not_by_value(role_renderer):
    urls = [URLS[0], "hooks.example/services/T000/s3cr3t", "ftp://hooks.example/s3cr3t", "https:///s3cr3t", "",
            "https://hooks.example.com/change-me"]  # the last one: inventories/prod's vault example
    failures = _validation(_renderer(role_renderer, alertmanager_webhook_urls=urls))
    assert failures == {"Check the webhook URLs": "Entries 2, 3, 4, 5, 6 of alertmanager_webhook_urls (counting from "
                                                  "1) are not http:// or https:// URLs with a host, or are the "
                                                  "example's change-me placeholder."}


def test_a_bad_duration_is_refused_by_name(role_renderer):
    failures = _validation(_renderer(role_renderer, alertmanager_group_wait="30 s", alertmanager_repeat_interval=4))
    assert failures == {"Check the grouping durations": 'alertmanager_group_wait is "30 s", '
                                                        "alertmanager_repeat_interval is 4: not a duration. Give a "
                                                        "number and a unit, such as 30s, 5m, 4h or 1h30m."}
