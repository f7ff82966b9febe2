"""The simulated GPU node looks like a bare-metal AMD Instinct server to the roles."""

import pathlib

import pytest
import yaml

# In a scenario with load balancers too, these checks are the GPU nodes'.
testinfra_hosts = ["ansible://gpu_nodes"]

RENDER_MAJOR = 226
# The platforms the lab simulates (OS release, kernel, default GPU), as the lab defines them.
LAB_VARS = pathlib.Path(__file__).resolve().parents[3] / "lab/vars.yml"
PLATFORMS = yaml.safe_load(LAB_VARS.read_text())["lab_platforms"]
OS_RELEASES = {"debian-12": ("Debian", "12"), "ubuntu-22.04": ("Ubuntu", "22.04"),
               "ubuntu-24.04": ("Ubuntu", "24.04")}


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
    model = variables.get("sim_gpu_model", PLATFORMS[variables.get("sim_platform", "debian-12")]["gpu_model"])
    assert facts["gfx_targets"] == [expected_target[model]]
    assert facts["missing_render_nodes"] == []


@pytest.mark.parametrize("path", ["/sys/class/net/lo", "/sys/class/net/eth0"])
def test_rest_of_sys_class_is_still_visible(host, path):
    """The simulated /sys/class keeps what other tools (and Ansible's facts) read there."""
    assert host.file(path).exists


def test_ansible_sees_the_platforms_os_release_and_kernel(host):
    platform = host.ansible.get_variables().get("sim_platform", "debian-12")
    facts = host.ansible("setup", "gather_subset=!all,!min,distribution,kernel")["ansible_facts"]
    distribution, version = OS_RELEASES[platform]
    assert (facts["ansible_distribution"], facts["ansible_distribution_version"].startswith(version)) == (
        distribution, True)
    assert facts["ansible_distribution_release"] == PLATFORMS[platform]["codename"]
    assert facts["ansible_kernel"] == PLATFORMS[platform]["kernel"] == host.check_output("uname -r")
