"""OS-specific variables and rendered files of the host roles, for the releases molecule cannot converge here
(only Debian 12 runs in the simulated lab; Ubuntu is covered by these tests)."""

import pytest

UBUNTU_2204 = {"distribution": "Ubuntu", "distribution_release": "jammy", "distribution_version": "22.04",
               "distribution_major_version": "22", "kernel": "5.15.0-125-generic"}
UBUNTU_2404 = {"distribution": "Ubuntu", "distribution_release": "noble", "distribution_version": "24.04",
               "distribution_major_version": "24", "kernel": "6.8.0-51-generic"}
DEBIAN_12 = {"distribution": "Debian", "distribution_release": "bookworm", "distribution_version": "12.8",
             "distribution_major_version": "12", "kernel": "6.1.0-28-amd64"}


@pytest.mark.parametrize(
    ("facts", "suite", "packages"),
    [
        (UBUNTU_2204, "jammy", ["linux-headers-5.15.0-125-generic", "linux-modules-extra-5.15.0-125-generic"]),
        (UBUNTU_2404, "noble", ["linux-headers-6.8.0-51-generic", "linux-modules-extra-6.8.0-51-generic"]),
        # AMD builds for Ubuntu only; Debian 12 takes the jammy packages and has no modules-extra.
        (DEBIAN_12, "jammy", ["linux-headers-6.1.0-28-amd64"]),
    ],
    ids=["ubuntu-22.04", "ubuntu-24.04", "debian-12"],
)
def test_rocm_suite_and_kernel_packages(role_renderer, facts, suite, packages):
    rocm = role_renderer("rocm", facts, var_files=("main.yml", f"{facts['distribution']}.yml"))
    assert rocm.var("_rocm_apt_suite") == suite
    assert rocm.var("_rocm_kernel_packages") == packages


@pytest.mark.parametrize(
    ("version", "path_version", "line"),
    [("7.0.0", "7.0", "7.0"), ("7.0.2", "7.0.2", "7.0"), ("7.1.0", "7.1", "7.1"), ("7.10.1", "7.10.1", "7.10")],
)
def test_rocm_repository_path_drops_a_zero_patch_release(role_renderer, version, path_version, line):
    rocm = role_renderer("rocm", UBUNTU_2404, overrides={"rocm_version": version})
    assert rocm.var("_rocm_repo_version") == path_version
    assert rocm.var("_rocm_release_line") == line


@pytest.mark.parametrize(("driver", "path_version"), [("30.20.0", "30.20"), ("30.20", "30.20"), ("30.10.2", "30.10.2")])
def test_amdgpu_repository_path_drops_a_zero_patch_release(role_renderer, driver, path_version):
    rocm = role_renderer("rocm", UBUNTU_2404, overrides={"rocm_amdgpu_version": driver})
    assert rocm.var("_rocm_amdgpu_repo_version") == path_version


@pytest.mark.parametrize(
    ("facts", "release"),
    [(UBUNTU_2204, "Ubuntu 22.04"), (UBUNTU_2404, "Ubuntu 24.04"), (DEBIAN_12, "Debian 12")],
)
def test_rocm_os_release_names_match_the_support_matrix(role_renderer, facts, release):
    rocm = role_renderer("rocm", facts)
    assert rocm.var("_rocm_os_release") == release
    assert release in rocm.var("_rocm_support_matrix['7.0'].kernels")


def test_rocm_support_matrix_keeps_mi325x_and_mi355x_off_debian(role_renderer):
    matrix = role_renderer("rocm", DEBIAN_12).var("_rocm_support_matrix")
    for line in matrix.values():
        assert "Debian 12" in line["os"]["MI300X"]
        assert "Debian 12" not in line["os"]["MI325X"]
        assert "Debian 12" not in line["os"]["MI355X"]


def test_rocm_pin_file_is_amds(role_renderer):
    pin = role_renderer("rocm", UBUNTU_2404).template("rocm-pin-600.j2")
    assert pin.startswith("#")
    assert "Package: *\nPin: release o=repo.radeon.com\nPin-Priority: 600\n" in pin


@pytest.mark.parametrize(
    ("facts", "packages"),
    [(UBUNTU_2404, ["linux-tools-common", "linux-tools-6.8.0-51-generic"]), (DEBIAN_12, ["linux-cpupower"])],
    ids=["ubuntu-24.04", "debian-12"],
)
def test_host_tuning_cpupower_packages(role_renderer, facts, packages):
    tuning = role_renderer("host_tuning", facts, var_files=(f"{facts['distribution']}.yml",))
    assert tuning.var("_host_tuning_cpupower_packages") == packages


@pytest.mark.parametrize(
    ("processor", "params"),
    [(["0", "AuthenticAMD", "AMD EPYC 9654 96-Core Processor"], "pci=realloc=off iommu=pt"),
     (["0", "GenuineIntel", "Intel(R) Xeon(R) Platinum 8480+"], "intel_iommu=on iommu=pt")],
    ids=["amd-host", "intel-host"],
)
def test_host_tuning_grub_dropin_follows_the_cpu_vendor(role_renderer, processor, params):
    tuning = role_renderer("host_tuning", {**UBUNTU_2404, "processor": processor}, var_files=("Ubuntu.yml",))
    dropin = tuning.template("grub-amd-instinct.cfg.j2")
    assert f'GRUB_CMDLINE_LINUX_DEFAULT="${{GRUB_CMDLINE_LINUX_DEFAULT}} {params}"' in dropin


def test_gpu_access_udev_rule(role_renderer):
    rule = role_renderer("gpu_access", DEBIAN_12, var_files=()).template("70-amdgpu.rules.j2")
    assert 'KERNEL=="kfd", SUBSYSTEM=="kfd", GROUP="render", MODE="0660"' in rule
    assert 'SUBSYSTEM=="drm", KERNEL=="renderD*", GROUP="render", MODE="0660"' in rule
