"""The ROCm stand-in repository, driven by the real apt-get, apt-cache and dpkg.

build_repo.py builds into a temporary directory and serve.py serves it on 127.0.0.1. Every apt command runs in
a throw-away root: an APT_CONFIG file sets `Dir` to it (so not even the host's apt.conf.d is read), the dpkg
status lists only libc6 and python3 (a minimal Debian 12 node), and packages are installed with
`dpkg --root --force-script-chrootless`, so their maintainer scripts run against that root through DPKG_ROOT.
Sources are written as the rocm role writes them: deb822 files whose URIs are computed from the role's
variables (base URL, rocm_version, rocm_amdgpu_version), Signed-By the key downloaded from
<base>/rocm/rocm.gpg.key, and AMD's pin `o=repo.radeon.com` at 600.
"""

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from lab.standin_process import StandinProcess

HERE = Path(__file__).parent
BUILD = HERE / "build_repo.py"
SERVE = HERE / "serve.py"
REAL_TOOLS = HERE.parent / "rocm_tools"
TIMEOUT = 60
NEEDED_COMMANDS = ("dpkg-deb", "dpkg", "apt-get", "apt-cache", "gpg", "gpgconf", "update-alternatives")
MISSING = [command for command in NEEDED_COMMANDS if shutil.which(command) is None]
pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"needs Debian's {', '.join(MISSING)} (apt, dpkg, gnupg)")

# The tree `apt-get install amdgpu-dkms rocm` must pull, as AMD's packages name it.
INSTALL_SET = {"amdgpu-dkms", "amdgpu-dkms-firmware", "rocm", "rocm-core", "rocminfo", "hsa-rocr",
               "hip-runtime-amd", "rocm-hip-runtime", "rocm-hip", "rocm-developer-tools", "amd-smi-lib"}
# (rocm_version, rocm_amdgpu_version) as an operator sets them in the role, and AMD's numeric tags.
RELEASES = [("7.0.2", "30.10.2", "70002", "30100200"), ("7.1.0", "30.20", "70100", "30200000"),
            ("7.1.1", "30.20.1", "70101", "30200100")]
SUITE_OS = {"jammy": "22.04", "noble": "24.04"}
# The lab's platforms' kernels (lab/vars.yml), as the lab passes them.
DEBIAN_KERNEL = "6.1.0-18-amd64"
UBUNTU_KERNELS = {"jammy": "5.15.0-126-generic", "noble": "6.8.0-49-generic"}
KERNEL_ARGS = ("--kernel", f"bookworm={DEBIAN_KERNEL}",
               *[arg for suite, release in UBUNTU_KERNELS.items() for arg in ("--kernel", f"{suite}={release}")])
# A minimal Debian 12 node: what the stand-in packages need from the distribution.
BASE_STATUS = """\
Package: libc6
Status: install ok installed
Priority: optional
Section: libs
Installed-Size: 12000
Maintainer: GNU Libc Maintainers <debian-glibc@lists.debian.org>
Architecture: amd64
Multi-Arch: same
Version: 2.36-9+deb12u4
Description: GNU C Library: Shared libraries

Package: python3
Status: install ok installed
Priority: optional
Section: python
Installed-Size: 90
Maintainer: Matthias Klose <doko@debian.org>
Architecture: amd64
Version: 3.11.2-1+b1
Description: interactive high-level object-oriented language (default version)
"""


def run(command: list, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(part) for part in command], capture_output=True, text=True, timeout=TIMEOUT,
                          **kwargs)


def build(out: Path, tools_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    return run([sys.executable, BUILD, "--out", out, "--tools-dir", tools_dir, *extra])


def role_urls(base: str, rocm_version: str, amdgpu_version: str) -> dict:
    """The URLs the rocm role computes from its variables (roles/rocm/tasks/repositories.yml, vars/main.yml)."""
    rocm_path = re.sub(r"^(\d+\.\d+)\.0$", r"\1", rocm_version)
    return {"key": f"{base}/rocm/rocm.gpg.key", "amdgpu": f"{base}/amdgpu/{amdgpu_version}/ubuntu",
            "rocm": f"{base}/rocm/apt/{rocm_path}"}


class Server(StandinProcess):
    """serve.py as a subprocess on a free loopback port."""

    def __init__(self, directory: Path, log_path: Path) -> None:
        super().__init__(SERVE, ["--dir", str(directory)], log_path)


class AptRoot:
    """A throw-away system root that apt-get, apt-cache and dpkg work in instead of the host's."""

    def __init__(self, root: Path) -> None:
        self.root = root
        for directory in ("etc/apt/apt.conf.d", "etc/apt/sources.list.d", "etc/apt/preferences.d",
                          "etc/apt/keyrings", "etc/apt/trusted.gpg.d", "var/lib/apt/lists/partial",
                          "var/cache/apt/archives/partial", "var/lib/dpkg/info", "var/lib/dpkg/updates",
                          "var/log"):
            (root / directory).mkdir(parents=True, exist_ok=True)
        (root / "var/lib/dpkg/status").write_text(BASE_STATUS)
        for listed in ("libc6:amd64", "python3"):
            (root / f"var/lib/dpkg/info/{listed}.list").write_text("")
        self.apt_config = root / "etc/apt/apt.conf"
        self.apt_config.write_text(f'Dir "{root}/";\nDir::State::status "{root}/var/lib/dpkg/status";\n'
                                   'APT::Architecture "amd64";\nAPT::Architectures { "amd64"; };\n'
                                   'APT::Sandbox::User "root";\nDebug::NoLocking "true";\n')

    def path(self, absolute: str) -> Path:
        return self.root / absolute.lstrip("/")

    def install_key(self, key_url: str, dearmored: bool = False) -> Path:
        """As the role does (get_url to rocm.asc), or as AMD's docs do (gpg --dearmor to rocm.gpg)."""
        armored = urllib.request.urlopen(key_url, timeout=TIMEOUT).read()
        keyring = self.path("/etc/apt/keyrings/rocm.asc")
        keyring.write_bytes(armored)
        if dearmored:
            dearmored_keyring = keyring.with_suffix(".gpg")
            run(["gpg", "--batch", "--yes", "--homedir", self.root, "--dearmor", "--output", dearmored_keyring,
                 keyring], check=True)
            keyring.unlink()
            keyring = dearmored_keyring
        return keyring

    def add_source(self, name: str, uri: str, suite: str, keyring: Path) -> None:
        self.path(f"/etc/apt/sources.list.d/{name}.sources").write_text(
            f"Types: deb\nURIs: {uri}\nSuites: {suite}\nComponents: main\nArchitectures: amd64\n"
            f"Signed-By: {keyring}\n")

    def pin(self) -> None:
        self.path("/etc/apt/preferences.d/rocm-pin-600").write_text(
            "Package: *\nPin: release o=repo.radeon.com\nPin-Priority: 600\n")

    def apt(self, tool: str, *args: str) -> subprocess.CompletedProcess:
        return run([tool, *args], env={**os.environ, "APT_CONFIG": str(self.apt_config), "LC_ALL": "C"})

    def update(self) -> subprocess.CompletedProcess:
        result = self.apt("apt-get", "update")
        assert result.returncode == 0 and "W: " not in result.stdout + result.stderr, result.stdout + result.stderr
        return result

    def simulate(self, *packages: str) -> dict[str, str]:
        """apt-get --simulate install: the resolved packages and versions (from its `Inst` lines)."""
        result = self.apt("apt-get", "install", "--simulate", *packages)
        assert result.returncode == 0, result.stdout + result.stderr
        return dict(re.findall(r"^Inst (\S+) (?:\[\S+\] )?\((\S+) ", result.stdout, re.MULTILINE))

    def install(self, *packages: str) -> subprocess.CompletedProcess:
        """apt resolves and downloads (verified against the signed indices); dpkg installs into the root."""
        assert self.apt("apt-get", "clean").returncode == 0
        download = self.apt("apt-get", "install", "--download-only", "--yes", *packages)
        assert download.returncode == 0, download.stdout + download.stderr
        debs = sorted(self.path("/var/cache/apt/archives").glob("*.deb"))
        assert debs, download.stdout
        result = run(["dpkg", f"--root={self.root}", "--force-script-chrootless",
                      f"--log={self.path('/var/log/dpkg.log')}", "--install", *debs])
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    def installed(self) -> dict[str, str]:
        result = run(["dpkg-query", f"--root={self.root}", "--show", "--showformat", "${Package} ${Version}\n"],
                     check=True)
        return dict(line.split() for line in result.stdout.splitlines())


@pytest.fixture(scope="module")
def tools_dir(tmp_path_factory) -> Path:
    """The real rocminfo/amd-smi stand-ins when they exist, else placeholders used only by this test."""
    if all((REAL_TOOLS / name).is_file() for name in ("rocminfo", "amd-smi")):
        return REAL_TOOLS
    placeholders = tmp_path_factory.mktemp("tools-placeholder")
    for name in ("rocminfo", "amd-smi"):
        (placeholders / name).write_text(f"#!/usr/bin/env python3\nprint('placeholder {name}')\n")
    return placeholders


def built_repo(tmp_path_factory, tools_dir: Path, name: str) -> Path:
    out = tmp_path_factory.mktemp(name)
    result = build(out, tools_dir, *KERNEL_ARGS)
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def repo(tmp_path_factory, tools_dir) -> Path:
    return built_repo(tmp_path_factory, tools_dir, "rocm-repo")


@pytest.fixture(scope="module")
def manifest(repo) -> dict:
    return json.loads((repo / "standin-repo.json").read_text())


@pytest.fixture(scope="module")
def base_url(repo, tmp_path_factory):
    server = Server(repo, tmp_path_factory.mktemp("logs") / "serve.log")
    yield server.url
    server.stop()


@pytest.fixture
def apt_root(tmp_path) -> AptRoot:
    return AptRoot(tmp_path / "root")


def test_layout_follows_repo_radeon_com(repo, manifest, base_url):
    for rocm_version, amdgpu_version, _, _ in RELEASES:
        urls = role_urls(base_url, rocm_version, amdgpu_version)
        for suite in SUITE_OS:
            for kind in ("rocm", "amdgpu"):
                for name in ("InRelease", "Release", "Release.gpg", "main/binary-amd64/Packages.gz"):
                    url = f"{urls[kind]}/dists/{suite}/{name}"
                    assert urllib.request.urlopen(url, timeout=TIMEOUT).status == 200, url
        release = urllib.request.urlopen(f"{urls['rocm']}/dists/jammy/Release", timeout=TIMEOUT).read().decode()
        for field in ("Origin: repo.radeon.com", "Label: repo.radeon.com", "Suite: jammy", "Codename: jammy",
                      f"Version: {rocm_version}", "Components: main", "Architectures: amd64"):
            assert f"\n{field}\n" in f"\n{release}", field
    key = urllib.request.urlopen(role_urls(base_url, "7.0.2", "30.10.2")["key"], timeout=TIMEOUT).read()
    assert key.startswith(b"-----BEGIN PGP PUBLIC KEY BLOCK-----")
    assert manifest["kernel_repo"] == "kernel-standin"
    # The secret half of the test key is in the built directory but never served; nor are listings.
    assert (repo / ".build/signing-key.asc").is_file()
    for hidden in ("/.build/signing-key.asc", "/rocm/apt/", "/%2ebuild/inputs.sha256"):
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(base_url + hidden, timeout=TIMEOUT)
        assert error.value.code == 404, hidden


def test_second_build_with_same_inputs_changes_nothing(repo, tools_dir):
    in_release = repo / "rocm/apt/7.0.2/dists/jammy/InRelease"
    before = in_release.stat().st_mtime_ns
    result = build(repo, tools_dir, *KERNEL_ARGS)
    assert result.returncode == 0, result.stderr
    assert "(up to date)" in result.stdout
    for path in ("rocm/apt/7.0.2", "rocm/apt/7.1", "rocm/apt/7.1.1", "amdgpu/30.10.2/ubuntu", "amdgpu/30.20/ubuntu",
                 "amdgpu/30.20.1/ubuntu", "kernel-standin", "rocm/rocm.gpg.key"):
        assert path in result.stdout, path
    assert in_release.stat().st_mtime_ns == before


@pytest.fixture(scope="module")
def rebuilt(tmp_path_factory, tools_dir) -> Path:
    """A second build elsewhere: same packages, but its own, different test key."""
    return built_repo(tmp_path_factory, tools_dir, "rocm-repo-rebuilt")


def test_packages_and_indices_are_reproducible(repo, rebuilt):
    debs = sorted(path.relative_to(repo) for path in repo.rglob("*.deb"))
    # AMD's: 3 releases x 2 suites x (9 + 2); kernels: Debian's headers, Ubuntu's three per kernel and one
    # linux-tools-common that both Ubuntu suites list.
    assert len(debs) == 3 * 2 * (9 + 2) + 1 + 2 * 3 + 1
    for deb in debs:
        assert (repo / deb).read_bytes() == (rebuilt / deb).read_bytes(), deb
    for release in repo.rglob("dists/*/Release"):
        assert release.read_bytes() == (rebuilt / release.relative_to(repo)).read_bytes(), release
    assert (repo / "rocm/rocm.gpg.key").read_bytes() != (rebuilt / "rocm/rocm.gpg.key").read_bytes()


@pytest.mark.parametrize("dearmored", [False, True], ids=["role-asc-key", "amd-docs-dearmored-key"])
def test_update_verifies_the_signature(apt_root, base_url, manifest, dearmored):
    urls = role_urls(base_url, "7.0.2", "30.10.2")
    keyring = apt_root.install_key(urls["key"], dearmored=dearmored)
    apt_root.add_source("amdgpu", urls["amdgpu"], "jammy", keyring)
    apt_root.add_source("rocm", urls["rocm"], "jammy", keyring)
    result = apt_root.update()
    assert "rocm/apt/7.0.2 jammy InRelease" in result.stdout
    assert "amdgpu/30.10.2/ubuntu jammy InRelease" in result.stdout
    lists = [path.name for path in apt_root.path("/var/lib/apt/lists").glob("*_Packages*")]
    assert len(lists) == 2, lists


@pytest.fixture(scope="module")
def broken_copy(repo, tmp_path_factory):
    """A served copy of the repository with one suite unsigned and another tampered with after signing."""
    copy = tmp_path_factory.mktemp("broken") / "www"
    shutil.copytree(repo, copy, ignore=shutil.ignore_patterns(".build"))
    for signature in ("InRelease", "Release.gpg"):
        (copy / "rocm/apt/7.0.2/dists/jammy" / signature).unlink()
    # Same size, one byte changed: only the signed hashes can tell.
    packages = copy / "rocm/apt/7.0.2/dists/noble/main/binary-amd64/Packages.gz"
    tampered = bytearray(packages.read_bytes())
    tampered[-1] ^= 0xFF
    packages.write_bytes(bytes(tampered))
    server = Server(copy, tmp_path_factory.mktemp("logs") / "serve-broken.log")
    yield server.url
    server.stop()


def test_update_fails_unsigned_tampered_or_with_another_key(apt_root, base_url, broken_copy, rebuilt, manifest):
    keyring = apt_root.install_key(role_urls(base_url, "7.0.2", "30.10.2")["key"])
    broken = role_urls(broken_copy, "7.0.2", "30.10.2")
    for suite, expected in (("jammy", "is not signed"), ("noble", "Hash Sum mismatch")):
        apt_root.add_source("rocm", broken["rocm"], suite, keyring)
        result = apt_root.apt("apt-get", "update")
        assert result.returncode != 0 and expected in result.stdout + result.stderr, result.stdout + result.stderr
    # The repository as a later release would serve it, signed by a new key (AMD warns the key can change).
    other_key = Server(rebuilt, apt_root.root.parent / "serve-rebuilt.log")
    try:
        apt_root.add_source("rocm", role_urls(other_key.url, "7.0.2", "30.10.2")["rocm"], "jammy", keyring)
        result = apt_root.apt("apt-get", "update")
    finally:
        other_key.stop()
    output = result.stdout + result.stderr
    new_key = json.loads((rebuilt / "standin-repo.json").read_text())["key_fingerprint"]
    assert new_key != manifest["key_fingerprint"]
    assert result.returncode != 0 and f"NO_PUBKEY {new_key[-16:]}" in output and "is not signed" in output, output
    assert not list(apt_root.path("/var/lib/apt/lists").glob("*_Packages*"))


def test_pin_puts_amds_origin_at_600(apt_root, base_url):
    urls = role_urls(base_url, "7.0.2", "30.10.2")
    keyring = apt_root.install_key(urls["key"])
    apt_root.add_source("rocm", urls["rocm"], "jammy", keyring)
    apt_root.update()
    line = re.compile(rf"^\s+(\d+) {re.escape(urls['rocm'])} jammy/main amd64 Packages$", re.MULTILINE)
    assert line.findall(apt_root.apt("apt-cache", "policy", "rocm").stdout) == ["500"]
    apt_root.pin()
    policy = apt_root.apt("apt-cache", "policy", "rocm").stdout
    assert "Candidate: 7.0.2.70002-56~22.04" in policy
    assert line.findall(policy) == ["600"], policy
    assert ("release v=7.0.2,o=repo.radeon.com,a=jammy,n=jammy,l=repo.radeon.com,c=main,b=amd64"
            in apt_root.apt("apt-cache", "policy").stdout)


@pytest.mark.parametrize("suite", list(SUITE_OS))
@pytest.mark.parametrize("rocm_version,amdgpu_version,rocm_code,amdgpu_code", RELEASES)
def test_every_release_resolves_amdgpu_dkms_and_rocm(apt_root, base_url, suite, rocm_version, amdgpu_version,
                                                     rocm_code, amdgpu_code):
    urls = role_urls(base_url, rocm_version, amdgpu_version)
    keyring = apt_root.install_key(urls["key"])
    apt_root.add_source("amdgpu", urls["amdgpu"], suite, keyring)
    apt_root.add_source("rocm", urls["rocm"], suite, keyring)
    apt_root.pin()
    apt_root.update()
    resolved = apt_root.simulate("amdgpu-dkms", "rocm")
    assert set(resolved) == INSTALL_SET
    os_version = SUITE_OS[suite]
    # AMD's version forms: 7.0.2.70002-56~22.04, 1:6.14.14.30100200-2226257.22.04, 30.10.2.0.30100200-....
    assert re.fullmatch(rf"{rocm_version}\.{rocm_code}-\d+~{os_version}", resolved["rocm"])
    release_suffix = resolved["rocm"].split(".", 3)[3]  # 70002-56~22.04: one build of the whole release
    for name in INSTALL_SET - {"amdgpu-dkms", "amdgpu-dkms-firmware"}:
        assert resolved[name].endswith(f".{release_suffix}"), (name, resolved[name])
    assert re.fullmatch(rf"1:\d+\.\d+\.\d+\.{amdgpu_code}-\d+\.{os_version}", resolved["amdgpu-dkms"])
    driver_release = ".".join(str(int(amdgpu_code[i:i + 2])) for i in (0, 2, 4))
    assert re.fullmatch(rf"{driver_release}\.0\.{amdgpu_code}-\d+\.{os_version}", resolved["amdgpu-dkms-firmware"])
    # rocm does not pull the driver (AMD installs them separately); amdgpu-dkms pulls its exact firmware.
    assert "amdgpu-dkms" not in apt_root.simulate("rocm")
    assert set(apt_root.simulate("amdgpu-dkms")) == {"amdgpu-dkms", "amdgpu-dkms-firmware"}


def test_install_upgrade_and_remove_in_a_throwaway_root(apt_root, base_url, manifest, tools_dir):
    kernel = DEBIAN_KERNEL
    urls = role_urls(base_url, "7.0.2", "30.10.2")
    keyring = apt_root.install_key(urls["key"])
    apt_root.add_source("amdgpu", urls["amdgpu"], "jammy", keyring)
    apt_root.add_source("rocm", urls["rocm"], "jammy", keyring)
    apt_root.add_source("kernel-standin", f"{base_url}/kernel-standin", "bookworm", keyring)
    apt_root.pin()
    apt_root.update()
    # The role installs the running kernel's headers first, then the driver, then rocm.
    assert set(apt_root.simulate(f"linux-headers-{kernel}")) == {f"linux-headers-{kernel}"}
    apt_root.install(f"linux-headers-{kernel}", "amdgpu-dkms", "rocm")
    installed = apt_root.installed()
    assert installed["rocm"] == "7.0.2.70002-56~22.04"
    assert installed["amdgpu-dkms"] == "1:6.14.14.30100200-2226257.22.04"
    assert installed["amdgpu-dkms-firmware"] == "30.10.2.0.30100200-2226257.22.04"
    build_link = apt_root.path(f"/lib/modules/{kernel}/build")
    assert os.readlink(build_link) == f"/usr/src/linux-headers-{kernel}"
    assert apt_root.path(f"/usr/src/linux-headers-{kernel}/Makefile").is_file()
    state = apt_root.path("/var/lib/amdgpu-dkms-standin")
    assert (state / "installed-version").read_text() == "1:6.14.14.30100200-2226257.22.04\n"
    assert (state / "driver-release").read_text() == "30.10.2\n"
    assert (state / "built-for").read_text() == f"{kernel}\n"
    assert apt_root.path("/usr/src/amdgpu-6.14.14-2226257.22.04/dkms.conf").is_file()
    assert list(apt_root.path("/lib/firmware/updates/amdgpu").iterdir())
    # /opt/rocm is rocm-core's alternative; the tools are the packaged stand-ins, executable.
    assert os.readlink(apt_root.path("/opt/rocm")) == "/etc/alternatives/rocm"
    assert os.readlink(apt_root.path("/etc/alternatives/rocm")) == "/opt/rocm-7.0.2"
    assert apt_root.path("/opt/rocm-7.0.2/.info/version").read_text() == "7.0.2\n"
    rocminfo = apt_root.path("/opt/rocm-7.0.2/bin/rocminfo")
    assert rocminfo.read_bytes() == (tools_dir / "rocminfo").read_bytes()
    assert rocminfo.stat().st_mode & stat.S_IXOTH
    amd_smi = apt_root.path("/opt/rocm-7.0.2/bin/amd-smi")
    assert os.readlink(amd_smi) == "../libexec/amdsmi_cli/amdsmi_cli.py"
    assert amd_smi.read_bytes() == (tools_dir / "amd-smi").read_bytes()
    assert amd_smi.resolve().stat().st_mode & stat.S_IXOTH

    # Upgrading is a change of rocm_version and rocm_amdgpu_version: new sources, same package names.
    urls = role_urls(base_url, "7.1.1", "30.20.1")
    apt_root.add_source("amdgpu", urls["amdgpu"], "jammy", keyring)
    apt_root.add_source("rocm", urls["rocm"], "jammy", keyring)
    apt_root.update()
    apt_root.install("amdgpu-dkms", "rocm")
    installed = apt_root.installed()
    assert installed["rocm"] == "7.1.1.70101-38~22.04"
    assert installed["amdgpu-dkms"] == "1:6.16.6.30200100-2255209.22.04"
    assert (state / "installed-version").read_text() == "1:6.16.6.30200100-2255209.22.04\n"
    assert os.readlink(apt_root.path("/etc/alternatives/rocm")) == "/opt/rocm-7.1.1"
    assert not apt_root.path("/opt/rocm-7.0.2").exists()

    removal = run(["dpkg", f"--root={apt_root.root}", "--force-script-chrootless", "--purge", "rocm",
                   "rocm-hip", "rocm-hip-runtime", "rocm-developer-tools", "rocminfo", "amd-smi-lib",
                   "hip-runtime-amd", "hsa-rocr", "rocm-core", "amdgpu-dkms"])
    assert removal.returncode == 0, removal.stdout + removal.stderr
    assert not os.path.lexists(apt_root.path("/opt/rocm"))
    assert not state.exists()


def test_build_refuses_missing_tools_and_bad_kernel_release(tmp_path, tools_dir):
    result = build(tmp_path / "out", tmp_path)
    assert result.returncode != 0
    assert f"{tmp_path / 'rocminfo'}" in result.stderr and f"{tmp_path / 'amd-smi'}" in result.stderr
    result = build(tmp_path / "out", tools_dir, "--kernel", "bookworm=5.15.153.1-microsoft-standard-WSL2")
    assert result.returncode != 0 and "must be SUITE=RELEASE" in result.stderr
    assert not (tmp_path / "out/standin-repo.json").exists()


def test_kernel_suites_carry_each_distributions_package_names(repo, manifest, base_url):
    """Debian's suite serves the headers; Ubuntu's also the extra modules and the tools the roles install."""
    assert manifest["kernel_packages"]["bookworm"] == {f"linux-headers-{DEBIAN_KERNEL}": "6.1.0-1~standin"}
    for suite, kernel in UBUNTU_KERNELS.items():
        index = urllib.request.urlopen(f"{base_url}/kernel-standin/dists/{suite}/main/binary-amd64/Packages",
                                       timeout=TIMEOUT).read().decode()
        stanzas = {stanza.split("\n")[0].removeprefix("Package: "): stanza for stanza in index.split("\n\n") if stanza}
        assert set(stanzas) == {f"linux-headers-{kernel}", f"linux-modules-extra-{kernel}",
                                f"linux-tools-{kernel}", "linux-tools-common"}
        assert "Depends: linux-tools-common\n" in stanzas[f"linux-tools-{kernel}"]
        # cpupower itself comes from Debian's package (the node's userland is Debian's).
        assert "Depends: linux-cpupower\n" in stanzas["linux-tools-common"]
