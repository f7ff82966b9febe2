"""The model_weights role's fan-out settings: the checks of validate.yml and preflight.yml evaluated with the role's
variables, and the peer server's unit as systemd reads it. The fan-out itself, with the rendered nginx
configuration, is tested in tests/unit/plugins/test_hf_fanout.py."""

import shutil
import subprocess

import pytest
import yaml

FACTS = {"default_ipv4": {"address": "10.30.0.11"}}
PEER_ADDRESS_CHECK = "Check the address of the fan-out's peer server"


def _renderer(role_renderer, **overrides):
    return role_renderer("model_weights", FACTS, overrides={"model_weights_source": "fanout", **overrides})


def _passes(renderer, tasks_file: str, name: str) -> bool:
    """Whether the assert task `name` of a tasks file passes (True when its `when` skips it)."""
    task = next(task for task in yaml.safe_load((renderer.role_dir / "tasks" / tasks_file).read_text())
                if task.get("name") == name)
    that = task["ansible.builtin.assert"]["that"]
    conditions = " and ".join(f"({condition})" for condition in (that if isinstance(that, list) else [that]))
    return ("when" in task and not renderer.render("{{ " + task["when"] + " }}", task.get("vars"))) \
        or renderer.render("{{ " + conditions + " }}", task.get("vars"))


@pytest.mark.parametrize(("overrides", "passes"), [
    ({}, True),
    ({"model_weights_peer_wait": 30}, True),
    ({"model_weights_peer_wait": 29}, False),
    ({"model_weights_peer_wait": 45.5}, False),
    ({"model_weights_peer_port": 0}, False),
    ({"model_weights_peer_port": 65536}, False),
    ({"model_weights_peer_port": "8090"}, True),
    ({"model_weights_source": "hub", "model_weights_peer_wait": 1}, True),
], ids=["defaults", "wait-30", "wait-29", "wait-fraction", "port-0", "port-65536", "port-string", "not-fanout"])
def test_validate_checks_the_fanout_settings(role_renderer, overrides, passes):
    assert _passes(_renderer(role_renderer, **overrides), "validate.yml", "Check the fan-out's settings") == passes


def test_validate_accepts_fanout_as_a_source(role_renderer):
    assert _passes(_renderer(role_renderer), "validate.yml", "Check the settings")
    assert not _passes(_renderer(role_renderer, model_weights_source="swarm"), "validate.yml", "Check the settings")


@pytest.mark.parametrize(("address", "passes"), [
    (None, True), ("192.168.10.254", True), ("", False), ("gpu-node1", False), ("10.0.0.256", False),
    ("10.0.0", False), ("10.0.0.1 ", False),
], ids=["default", "address", "empty", "name", "octet", "three-octets", "space"])
def test_preflight_needs_an_ipv4_address_for_the_peer_server(role_renderer, address, passes):
    overrides = {} if address is None else {"model_weights_peer_address": address}
    assert _passes(_renderer(role_renderer, **overrides), "preflight.yml", PEER_ADDRESS_CHECK) == passes


def test_without_facts_the_peer_address_is_empty_and_refused(role_renderer):
    renderer = role_renderer("model_weights", {}, overrides={"model_weights_source": "fanout"})
    assert renderer.var("model_weights_peer_address") == ""
    assert not _passes(renderer, "preflight.yml", PEER_ADDRESS_CHECK)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None or shutil.which("nginx") is None,
                    reason="needs systemd-analyze and nginx (the unit's ExecStart)")
def test_the_peer_servers_unit_is_valid(role_renderer, tmp_path):
    """What the role's `validate: systemd-analyze verify %s` runs."""
    unit = tmp_path / "model-weights-peer.service"
    unit.write_text(_renderer(role_renderer).template("model-weights-peer.service.j2"))
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "model-weights-peer" not in result.stderr, result.stderr
    lines = set(unit.read_text().splitlines())
    assert {"DynamicUser=yes", "RuntimeDirectory=model-weights-peer", "RuntimeMaxSec=172800",
            "ExecStart=/usr/sbin/nginx -p /run/model-weights-peer/ -c /etc/model-weights/peer-nginx.conf"} <= lines
    assert "[Install]" not in lines, "never started at boot"
