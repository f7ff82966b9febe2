"""The simulated GPU node looks like a bare-metal AMD Instinct server to the roles."""

import pytest

RENDER_MAJOR = 226


def _device(host, path):
    """(file type, major, minor) of a device node."""
    kind, major, minor = host.check_output(f"stat -c '%F|%t|%T' {path}").split("|")
    return kind, int(major, 16), int(minor, 16)


def test_systemd_is_pid_1_and_running(host):
    assert host.check_output("cat /proc/1/comm") == "systemd"
    state = host.run("systemctl is-system-running").stdout.strip()
    assert state == "running", host.check_output("systemctl --failed --no-legend")


def test_kfd_device_is_a_character_device(host):
    assert _device(host, "/dev/kfd")[0] == "character special file"


def test_every_gpu_has_card_and_render_nodes(host):
    count = int(host.ansible.get_variables().get("sim_gpu_count", 8))
    for index in range(count):
        assert _device(host, f"/dev/dri/card{index}") == ("character special file", RENDER_MAJOR, index)
        assert _device(host, f"/dev/dri/renderD{128 + index}") == ("character special file", RENDER_MAJOR, 128 + index)


def test_kfd_topology_reports_the_simulated_gpus(host):
    """Fact gathering reads the same tree a real node's amdgpu driver publishes."""
    variables = host.ansible.get_variables()
    facts = host.ansible("amd_gpu_facts", check=False)["ansible_facts"]["amd_gpu"]
    assert facts["kfd_present"] is True
    assert facts["count"] == int(variables.get("sim_gpu_count", 8))
    expected_target = {"mi300x": "gfx942", "mi325x": "gfx942", "mi355x": "gfx950"}
    assert facts["gfx_targets"] == [expected_target[variables.get("sim_gpu_model", "mi300x")]]
    assert facts["missing_render_nodes"] == []


@pytest.mark.parametrize("path", ["/sys/class/net/lo", "/sys/class/net/eth0"])
def test_rest_of_sys_class_is_still_visible(host, path):
    """The simulated /sys/class keeps what other tools (and Ansible's facts) read there."""
    assert host.file(path).exists


def test_ansible_sees_a_debian_12_server(host):
    facts = host.ansible("setup", "filter=ansible_distribution*")["ansible_facts"]
    assert facts["ansible_distribution"] == "Debian"
    assert facts["ansible_distribution_major_version"] == "12"
