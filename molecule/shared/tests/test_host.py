"""After site.yml the node is "ROCm and Docker ready, the GPUs usable from a container"."""

import json

import pytest

# In a scenario with load balancers too, these checks are the GPU nodes'.
testinfra_hosts = ["ansible://gpu_nodes"]


@pytest.mark.parametrize("package", ["amdgpu-dkms", "amdgpu-dkms-firmware", "rocm", "docker.io", "python3-debian"])
def test_packages_installed(host, package):
    assert host.package(package).is_installed


def test_the_distributions_kernel_packages_for_the_running_kernel(host):
    """Debian: the headers; Ubuntu: also the extra modules (with the driver) and the tools (cpupower)."""
    kernel = host.check_output("uname -r")
    facts = host.ansible("setup", "gather_subset=!all,!min,distribution")["ansible_facts"]
    expected = [f"linux-headers-{kernel}"]
    if facts["ansible_distribution"] == "Ubuntu":
        expected += [f"linux-modules-extra-{kernel}", f"linux-tools-{kernel}", "linux-tools-common"]
    for package in expected:
        assert host.package(package).is_installed, package
    assert host.exists("cpupower")


def test_amd_repositories_are_deb822_sources_signed_by_amds_key(host):
    # AMD builds per Ubuntu release; Debian 12 takes jammy's.
    release = host.ansible("setup", "gather_subset=!all,!min,distribution")["ansible_facts"][
        "ansible_distribution_release"]
    suite = "jammy" if release == "bookworm" else release
    for name in ("amdgpu", "rocm"):
        sources = host.file(f"/etc/apt/sources.list.d/{name}.sources")
        assert sources.exists
        assert "Signed-By: /etc/apt/keyrings/rocm.asc" in sources.content_string
        assert f"Suites: {suite}" in sources.content_string
    assert "/amdgpu/30.10.2/ubuntu" in host.file("/etc/apt/sources.list.d/amdgpu.sources").content_string
    assert "/rocm/apt/7.0.2" in host.file("/etc/apt/sources.list.d/rocm.sources").content_string


def test_amd_pin_prefers_amds_packages(host):
    policy = host.check_output("apt-cache policy rocm")
    assert "600 http" in policy
    assert "Pin-Priority: 600" in host.file("/etc/apt/preferences.d/rocm-pin-600").content_string


def test_driver_was_built_for_the_running_kernel(host):
    kernel = host.check_output("uname -r")
    assert host.file("/var/lib/amdgpu-dkms-standin/driver-release").content_string.strip() == "30.10.2"
    assert kernel in host.file("/var/lib/amdgpu-dkms-standin/built-for").content_string


def test_rocm_tools_see_every_gpu(host):
    count = int(host.ansible.get_variables().get("sim_gpu_count", 8))
    assert host.check_output("/opt/rocm/bin/rocminfo").count("Device Type:") >= count
    assert len(json.loads(host.check_output("/opt/rocm/bin/amd-smi list --json"))) == count


def test_local_fact_records_the_rocm_release(host):
    fact = json.loads(host.file("/etc/ansible/facts.d/rocm.fact").content_string)
    assert fact == {"rocm_version": "7.0.2", "amdgpu_version": "30.10.2"}


def test_gpu_devices_belong_to_render_and_video(host):
    assert host.file("/dev/kfd").group == "render"
    assert host.file("/dev/kfd").mode == 0o660
    for node in host.file("/dev/dri").listdir():
        device = host.file(f"/dev/dri/{node}")
        assert device.group == ("video" if node.startswith("card") else "render"), node
        assert device.mode == 0o660, node


def test_udev_rule_installed(host):
    rule = host.file("/etc/udev/rules.d/70-amdgpu.rules").content_string
    assert 'KERNEL=="kfd", SUBSYSTEM=="kfd", GROUP="render", MODE="0660"' in rule


def test_daemon_json_merged_with_log_rotation_and_lab_registry(host):
    config = json.loads(host.file("/etc/docker/daemon.json").content_string)
    assert config["log-driver"] == "json-file"
    assert config["log-opts"] == {"max-size": "100m", "max-file": "5"}
    assert "172.30.99.11:5000" in config["insecure-registries"]
    assert host.service("docker").is_running and host.service("docker").is_enabled


def test_host_tuning_is_persistent(host):
    assert "kernel.numa_balancing=0" in host.file("/etc/sysctl.d/90-amd-instinct.conf").content_string.replace(" ", "")
    assert "pci=realloc=off iommu=pt" in host.file("/etc/default/grub.d/90-amd-instinct.cfg").content_string
    assert "pci=realloc=off iommu=pt" in host.file("/boot/grub/grub.cfg").content_string
    assert host.service("disable-deep-cstates").is_enabled


def test_reboot_is_flagged_for_the_kernel_parameters(host):
    assert host.file("/var/run/reboot-required").exists
