"""The metrics_exporters role: the node exporter's arguments, and AMD's exporter unit with the command AMD
documents, checked by systemd-analyze where it can run."""

import pathlib
import shutil
import subprocess

import pytest

from tests.helpers.systemd_unit import exec_start_argv

FACTS = {"default_ipv4": {"address": "10.20.0.11"}}


def _renderer(role_renderer, **overrides):
    return role_renderer("metrics_exporters", FACTS, overrides=overrides)


def test_node_exporter_listens_on_the_nodes_address(role_renderer):
    arguments = _renderer(role_renderer).template("prometheus-node-exporter.default.j2").splitlines()
    assert 'ARGS="--web.listen-address=10.20.0.11:9100"' in arguments
    arguments = _renderer(role_renderer, metrics_exporters_node_listen_address="0.0.0.0",
                          metrics_exporters_node_port=9200).template("prometheus-node-exporter.default.j2")
    assert 'ARGS="--web.listen-address=0.0.0.0:9200"' in arguments.splitlines()


def test_amd_exporter_unit_runs_amds_documented_command(role_renderer):
    unit = _renderer(role_renderer).template("amd-device-metrics-exporter.service.j2")
    assert exec_start_argv(unit) == [
        "/usr/bin/docker", "run", "--rm", "--name", "amd-device-metrics-exporter",
        "--privileged",
        "--device", "/dev/kfd", "--device", "/dev/dri",
        "--volume", "/sys:/sys:ro",
        "--publish", "10.20.0.11:5000:5000",
        "docker.io/rocm/device-metrics-exporter:v1.5.1",
    ]
    assert "ExecStartPre=-/usr/bin/docker rm --force amd-device-metrics-exporter" in unit.splitlines()
    assert "ExecStop=/usr/bin/docker stop --time 30 amd-device-metrics-exporter" in unit.splitlines()
    assert {"Requires=docker.service", "Restart=on-failure", "WantedBy=multi-user.target"} <= set(unit.splitlines())


def test_amd_exporter_address_port_and_image_are_settable(role_renderer):
    unit = _renderer(role_renderer, metrics_exporters_amd_gpu_listen_address="127.0.0.1",
                     metrics_exporters_amd_gpu_port=5050,
                     metrics_exporters_amd_gpu_image="registry.example:5000/rocm/device-metrics-exporter:v1.5.1",
                     ).template("amd-device-metrics-exporter.service.j2")
    argv = exec_start_argv(unit)
    assert argv[argv.index("--publish") + 1] == "127.0.0.1:5050:5000"
    assert argv[-1] == "registry.example:5000/rocm/device-metrics-exporter:v1.5.1"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None or not pathlib.Path("/usr/bin/docker").exists(),
                    reason="needs systemd-analyze and /usr/bin/docker (the unit's ExecStart)")
def test_systemd_accepts_the_amd_exporter_unit(role_renderer, tmp_path):
    """What the role's `validate: systemd-analyze verify %s` runs on the node."""
    path = tmp_path / "amd-device-metrics-exporter.service"
    path.write_text(_renderer(role_renderer).template("amd-device-metrics-exporter.service.j2"))
    result = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert str(path) not in result.stderr, result.stderr  # systemd warns about bad lines but exits 0
