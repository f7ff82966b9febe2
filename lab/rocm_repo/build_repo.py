#!/usr/bin/env python3
"""Builds a signed stand-in for AMD's apt repositories on repo.radeon.com.

    build_repo.py --out DIR [--kernel SUITE=RELEASE ...] [--tools-dir D] [--force]

DIR becomes a web root laid out like https://repo.radeon.com, so the `rocm` role only needs its base URL:

    rocm/rocm.gpg.key                          ASCII-armored public key of a test key made at build time
    amdgpu/<driver>/ubuntu  jammy noble main   amdgpu-dkms, amdgpu-dkms-firmware
    rocm/apt/<rocm>         jammy noble main   rocm (meta) and the small tree under it
    kernel-standin          <suite> main       per --kernel: the kernel packages the roles install, under the
                                               distribution's names (bookworm: linux-headers-<R>; jammy and
                                               noble also linux-modules-extra-<R>, linux-tools-<R> and
                                               linux-tools-common)
    standin-repo.json                          what was built (releases, versions, URL paths)

An x.y.0 release is written without the .0 in both URL paths (rocm/apt/7.1, amdgpu/30.20/ubuntu), as AMD
does. The secret key and the input fingerprint stay in DIR/.build, which serve.py never serves. A second run
with the same inputs changes nothing. Packages are built with dpkg-deb; the indices (Packages, Release) are
written here and signed with gpg (InRelease and Release.gpg), so no apt-utils or reprepro is needed.
"""

import argparse
import calendar
import dataclasses
import gzip
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_TOOLS_DIR = HERE.parent / "rocm_tools"
TOOL_NAMES = ("rocminfo", "amd-smi")
# AMD builds one package set per Ubuntu release; the suite name picks it (Debian 12 uses jammy).
SUITES = {"jammy": "22.04", "noble": "24.04"}
ORIGIN = "repo.radeon.com"
KERNEL_REPO = "kernel-standin"
DEFAULT_KERNEL_SUITE = "bookworm"
KEY_PATH = "rocm/rocm.gpg.key"
MANIFEST = "standin-repo.json"
KEY_UID = "ROCm stand-in repository test key (lab/rocm_repo) <rocm-standin@example.invalid>"
ROCM_MAINTAINER = "ROCm Dev Support <rocm-dev.support@amd.com>"
AMDGPU_MAINTAINER = "Advanced Micro Devices (AMD) <gpudriverdevsupport@amd.com>"
AMDGPU_HOMEPAGE = "https://www.amd.com/en/support/linux-drivers"
STANDIN_NOTE = "This is a stand-in built by lab/rocm_repo for tests without a GPU."
COMMAND_TIMEOUT = 120
# Bump to force a rebuild when the output format changes in a way the script's own hash would not show.
LAYOUT_VERSION = "1"


@dataclasses.dataclass(frozen=True)
class Release:
    """One ROCm release and the amdgpu driver release AMD ships with it (versions from AMD's packages)."""

    rocm: str  # x.y.z
    rocm_build: int  # the -NN in 7.0.2.70002-56~22.04
    amdgpu: str  # x.y.z
    amdgpu_kernel: str  # upstream kernel base of amdgpu-dkms (1:6.14.14.30100200-...)
    amdgpu_build: int  # the -NNNNNNN in 1:6.14.14.30100200-2226257.22.04
    date: str  # release day, YYYY-MM-DD: Release files' Date and the packages' timestamps
    hip: str  # hip-runtime-amd version (7.0.51831)
    amd_smi: str  # amd-smi-lib version (26.0.2)
    hsa_rocr: str = "1.18.0"
    rocminfo: str = "1.0.0"


RELEASES = (
    Release(rocm="7.0.2", rocm_build=56, amdgpu="30.10.2", amdgpu_kernel="6.14.14", amdgpu_build=2226257,
            date="2025-10-10", hip="7.0.51831", amd_smi="26.0.2"),
    Release(rocm="7.1.0", rocm_build=20, amdgpu="30.20.0", amdgpu_kernel="6.16.6", amdgpu_build=2238411,
            date="2025-10-30", hip="7.1.25424", amd_smi="26.1.0"),
    Release(rocm="7.1.1", rocm_build=38, amdgpu="30.20.1", amdgpu_kernel="6.16.6", amdgpu_build=2255209,
            date="2025-11-26", hip="7.1.52802", amd_smi="26.2.0"),
)


@dataclasses.dataclass
class Package:
    """A binary package to build: control fields, files, symlinks and maintainer scripts."""

    name: str
    version: str
    architecture: str
    description: str  # first line is the synopsis
    maintainer: str
    section: str = "devel"
    homepage: str = "https://github.com/ROCm/ROCm"
    depends: tuple[str, ...] = ()
    files: dict[str, tuple[bytes, int]] = dataclasses.field(default_factory=dict)  # path -> (content, mode)
    symlinks: dict[str, str] = dataclasses.field(default_factory=dict)  # path -> target
    scripts: dict[str, str] = dataclasses.field(default_factory=dict)  # postinst/prerm/postrm -> text

    @property
    def filename(self) -> str:
        # Debian drops the epoch from file names.
        return f"{self.name}_{self.version.split(':')[-1]}_{self.architecture}.deb"

    @property
    def pool_path(self) -> str:
        return f"pool/main/{self.name[0]}/{self.name}/{self.filename}"

    def control(self) -> str:
        installed_kib = sum(len(content) for content, _ in self.files.values()) // 1024 + 1
        synopsis, *body = self.description.splitlines()
        fields = [("Package", self.name), ("Version", self.version), ("Architecture", self.architecture),
                  ("Maintainer", self.maintainer), ("Installed-Size", str(installed_kib))]
        if self.depends:
            fields.append(("Depends", ", ".join(self.depends)))
        fields += [("Section", self.section), ("Priority", "optional"), ("Homepage", self.homepage)]
        text = "".join(f"{key}: {value}\n" for key, value in fields)
        return text + f"Description: {synopsis}\n" + "".join(f" {line or '.'}\n" for line in body)


def url_version(version: str) -> str:
    """AMD's URL form: an x.y.0 release is written x.y, any other keeps its patch number."""
    return re.sub(r"^(\d+\.\d+)\.0$", r"\1", version)


def rocm_repo_path(release: Release) -> str:
    return f"rocm/apt/{url_version(release.rocm)}"


def amdgpu_repo_path(release: Release) -> str:
    return f"amdgpu/{url_version(release.amdgpu)}/ubuntu"


def version_code(version: str, width: int) -> str:
    """7.0.2 -> 70002 (width 5); 30.10.2 -> 30100200 (width 8): AMD's numeric tag in package versions."""
    major, minor, patch = (int(part) for part in version.split("."))
    code = f"{major}{minor:02d}{patch:02d}"
    return code.ljust(width, "0")


def rocm_packages(release: Release, os_version: str, tools: dict[str, bytes]) -> list[Package]:
    """rocm and the part of its dependency tree that the role and the checks touch, pinned like AMD's."""
    code = version_code(release.rocm, 5)
    suffix = f"{code}-{release.rocm_build}~{os_version}"
    prefix = f"/opt/rocm-{release.rocm}"
    major, minor, patch = (int(part) for part in release.rocm.split("."))

    def version(component: str) -> str:
        return f"{component}.{suffix}"

    def exact(name: str, component: str) -> str:
        return f"{name} (= {version(component)})"

    core = version(release.rocm)
    rocm_core = Package(
        "rocm-core", core, "amd64", "ROCm Runtime software stack\n"
        "ROCM-CORE package helps to get ROCm release version, get install path.\n" + STANDIN_NOTE,
        ROCM_MAINTAINER, depends=("python3", "libc6"),
        files={f"{prefix}/.info/version": (f"{release.rocm}\n".encode(), 0o644)},
        scripts={"postinst": rocm_core_postinst(release.rocm, major, minor, patch),
                 "prerm": rocm_core_prerm(release.rocm)})
    hsa_rocr = Package(
        "hsa-rocr", version(release.hsa_rocr), "amd64", "AMD Heterogeneous System Architecture HSA - Linux HSA "
        "Runtime for Boltzmann (ROCm) platforms\n" + STANDIN_NOTE + " It ships no library.",
        ROCM_MAINTAINER, depends=("rocm-core",))
    rocminfo = Package(
        "rocminfo", version(release.rocminfo), "amd64",
        "Radeon Open Compute (ROCm) Runtime rocminfo tool\n" + STANDIN_NOTE
        + " rocminfo reads the KFD topology under /sys.",
        ROCM_MAINTAINER, depends=("hsa-rocr", "python3", "libc6", "rocm-core"),
        files={f"{prefix}/bin/rocminfo": (tools["rocminfo"], 0o755)})
    hip_runtime = Package(
        "hip-runtime-amd", version(release.hip), "amd64",
        "HIP:Heterogenous-computing Interface for Portability\n" + STANDIN_NOTE + " It ships no library.",
        ROCM_MAINTAINER, depends=("hsa-rocr", "rocm-core"))
    amd_smi = Package(
        "amd-smi-lib", version(release.amd_smi), "amd64",
        "AMD System Management Interface Library for ROCm\n" + STANDIN_NOTE
        + " amd-smi reads the KFD topology under /sys.",
        ROCM_MAINTAINER, depends=("python3 (>= 3.6.8)", "rocm-core"),
        files={f"{prefix}/libexec/amdsmi_cli/amdsmi_cli.py": (tools["amd-smi"], 0o755)},
        symlinks={f"{prefix}/bin/amd-smi": "../libexec/amdsmi_cli/amdsmi_cli.py"})

    def meta(name: str, synopsis: str, *members: tuple[str, str]) -> Package:
        depends = tuple(exact(member, component) for member, component in members)
        return Package(name, core, "amd64", f"{synopsis}\n" + STANDIN_NOTE, ROCM_MAINTAINER,
                       section="metapackages", depends=depends)

    hip_runtime_meta = meta("rocm-hip-runtime", "Radeon Open Compute (ROCm) runtime",
                            ("hip-runtime-amd", release.hip), ("rocm-core", release.rocm),
                            ("rocminfo", release.rocminfo), ("hsa-rocr", release.hsa_rocr))
    hip_meta = meta("rocm-hip", "Radeon Open Compute (ROCm) HIP runtime and libraries",
                    ("rocm-hip-runtime", release.rocm), ("rocm-core", release.rocm))
    developer_tools = meta("rocm-developer-tools", "Radeon Open Compute (ROCm) developer tools",
                           ("amd-smi-lib", release.amd_smi), ("rocm-core", release.rocm))
    rocm = meta("rocm", "Radeon Open Compute (ROCm) software stack meta package",
                ("rocm-core", release.rocm), ("rocminfo", release.rocminfo), ("rocm-hip", release.rocm),
                ("rocm-developer-tools", release.rocm))
    return [rocm_core, hsa_rocr, rocminfo, hip_runtime, amd_smi, hip_runtime_meta, hip_meta, developer_tools, rocm]


def rocm_core_postinst(rocm_version: str, major: int, minor: int, patch: int) -> str:
    # AMD's rocm-core points /opt/rocm at /opt/rocm-<version> with update-alternatives, scored so that a higher
    # release wins and, for the same release, the later install. update-alternatives honours DPKG_ROOT.
    return f"""#!/bin/sh
set -e
if [ "$1" = configure ]; then
    now=$(date -u +%s)
    score=$(( ((({major} - 3) * 14 + {minor}) * 14 + {patch}) * 1000000 + (now - 1600000000) / 60 ))
    update-alternatives --install /opt/rocm rocm /opt/rocm-{rocm_version} "$score"
fi
exit 0
"""


def rocm_core_prerm(rocm_version: str) -> str:
    return f"""#!/bin/sh
set -e
case "$1" in
    remove|upgrade|deconfigure) update-alternatives --remove rocm /opt/rocm-{rocm_version} ;;
esac
exit 0
"""


def amdgpu_packages(release: Release, os_version: str) -> list[Package]:
    """amdgpu-dkms and its firmware, versioned like AMD's 30.x driver packages."""
    code = version_code(release.amdgpu, 8)
    build = f"{release.amdgpu_build}.{os_version}"
    firmware_version = f"{release.amdgpu}.0.{code}-{build}"
    driver_version = f"1:{release.amdgpu_kernel}.{code}-{build}"
    dkms_module_version = f"{release.amdgpu_kernel}-{build}"
    firmware = Package(
        "amdgpu-dkms-firmware", firmware_version, "all",
        "firmware blobs used by amdgpu driver in DKMS format\n" + STANDIN_NOTE
        + " The file it installs is a marker, not firmware.",
        AMDGPU_MAINTAINER, section="misc", homepage=AMDGPU_HOMEPAGE,
        files={"/lib/firmware/updates/amdgpu/gc_9_4_3_mec.bin":
               (f"amdgpu-dkms-firmware stand-in {firmware_version}: not firmware\n".encode(), 0o644)})
    dkms_conf = (f'PACKAGE_NAME="amdgpu"\nPACKAGE_VERSION="{dkms_module_version}"\n'
                 '# Stand-in (lab/rocm_repo): there is no module source to build.\n')
    driver = Package(
        "amdgpu-dkms", driver_version, "all",
        "amdgpu driver in DKMS format.\n" + STANDIN_NOTE
        + " It builds no kernel module: its postinst records the installed release under"
        + " /var/lib/amdgpu-dkms-standin.",
        AMDGPU_MAINTAINER, section="misc", homepage=AMDGPU_HOMEPAGE,
        depends=(f"amdgpu-dkms-firmware (= {firmware_version})",),
        files={f"/usr/src/amdgpu-{dkms_module_version}/dkms.conf": (dkms_conf.encode(), 0o644)},
        scripts={"postinst": amdgpu_dkms_postinst(release.amdgpu, driver_version, release.amdgpu_kernel,
                                                  dkms_module_version),
                 "postrm": AMDGPU_DKMS_POSTRM})
    return [firmware, driver]


def amdgpu_dkms_postinst(driver_release: str, package_version: str, module_version: str,
                         dkms_module_version: str) -> str:
    # In place of a DKMS build: record what is installed, and for which kernels headers were present (DKMS
    # skips, with a warning, a kernel whose headers are missing).
    return f"""#!/bin/sh
set -e
if [ "$1" = configure ]; then
    state="$DPKG_ROOT/var/lib/amdgpu-dkms-standin"
    mkdir -p "$state"
    echo "{package_version}" > "$state/installed-version"
    echo "{driver_release}" > "$state/driver-release"
    echo "{module_version}" > "$state/module-version"
    : > "$state/built-for"
    for build in "$DPKG_ROOT"/lib/modules/*/build; do
        kernel=$(basename "$(dirname "$build")")
        # The headers' build link is absolute: resolve it inside DPKG_ROOT.
        if [ -L "$build" ]; then
            target=$(readlink "$build")
            case "$target" in /*) build="$DPKG_ROOT$target" ;; esac
        fi
        if [ -f "$build/Makefile" ]; then
            echo "$kernel" >> "$state/built-for"
            echo "amdgpu/{dkms_module_version} stand-in: recorded as built for kernel $kernel"
        fi
    done
    if [ ! -s "$state/built-for" ]; then
        echo "amdgpu/{dkms_module_version} stand-in: no kernel headers found, module build skipped" >&2
    fi
fi
exit 0
"""


AMDGPU_DKMS_POSTRM = """#!/bin/sh
set -e
case "$1" in
    remove|purge) rm -rf "$DPKG_ROOT/var/lib/amdgpu-dkms-standin" ;;
esac
exit 0
"""


def kernel_headers_package(kernel_release: str) -> Package:
    """Stand-in for the distribution's linux-headers-<release> of the simulated node's kernel."""
    source = f"/usr/src/linux-headers-{kernel_release}"
    makefile = (f"# Stand-in (lab/rocm_repo) for the headers of Linux {kernel_release}: it builds nothing.\n"
                f"KERNELRELEASE = {kernel_release}\n"
                "kernelrelease:\n\t@echo $(KERNELRELEASE)\n"
                "modules:\n\t@echo 'kernel headers stand-in: cannot build modules' >&2; exit 1\n")
    return kernel_package(
        f"linux-headers-{kernel_release}", kernel_release, f"Header files for Linux {kernel_release}",
        "It installs a Makefile and the /lib/modules/<release>/build link, no headers.",
        files={f"{source}/Makefile": (makefile.encode(), 0o644),
               f"{source}/include/config/kernel.release": (f"{kernel_release}\n".encode(), 0o644)},
        symlinks={f"/lib/modules/{kernel_release}/build": source})


def kernel_package(name: str, kernel_release: str, synopsis: str, contents: str, **fields) -> Package:
    upstream = re.match(r"\d+(\.\d+)*", kernel_release).group(0)
    return Package(name, f"{upstream}-1~standin", "amd64", f"{synopsis}\n{STANDIN_NOTE} {contents}",
                   "Kernel Team <kernel-team@lists.example.invalid>", section="kernel",
                   homepage="https://www.kernel.org/", **fields)


def ubuntu_kernel_packages(kernel_release: str) -> list[Package]:
    """What Ubuntu ships per kernel besides its headers, under Ubuntu's names: the roles install
    linux-modules-extra-<R> with the driver and linux-tools-<R> for cpupower."""
    return [
        kernel_package(f"linux-modules-extra-{kernel_release}", kernel_release,
                       f"Linux kernel extra modules for version {kernel_release}", "It installs no module."),
        kernel_package(f"linux-tools-{kernel_release}", kernel_release,
                       f"Linux kernel version specific tools for version {kernel_release}",
                       "It only pulls linux-tools-common.", depends=("linux-tools-common",)),
    ]


def ubuntu_tools_common_package() -> Package:
    # Ubuntu's /usr/bin/cpupower runs the kernel's own build; here Debian's linux-cpupower provides the command.
    return kernel_package("linux-tools-common", "6.8", "Linux kernel version specific tools (common files)",
                          "It pulls Debian's linux-cpupower for the cpupower command.",
                          depends=("linux-cpupower",))


def kernel_suite_packages(suite: str, kernel_releases: list[str]) -> list[Package]:
    packages = [kernel_headers_package(release) for release in kernel_releases]
    if suite in SUITES:
        packages += [package for release in kernel_releases for package in ubuntu_kernel_packages(release)]
        packages.append(ubuntu_tools_common_package())
    return packages


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(command, check=True, capture_output=True, text=True, timeout=COMMAND_TIMEOUT,
                              **kwargs)
    except subprocess.CalledProcessError as error:
        raise SystemExit(f"build_repo: {' '.join(command)} failed:\n{error.stderr}") from error


def build_deb(package: Package, repo_dir: Path, staging_root: Path, epoch: int) -> Path:
    staging = Path(tempfile.mkdtemp(prefix=f"{package.name}-", dir=staging_root))
    control_dir = staging / "DEBIAN"
    control_dir.mkdir()
    (control_dir / "control").write_text(package.control())
    for script, text in package.scripts.items():
        (control_dir / script).write_text(text)
        (control_dir / script).chmod(0o755)
    for path, (content, mode) in package.files.items():
        target = staging / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        target.chmod(mode)
    for path, link_target in package.symlinks.items():
        link = staging / path.lstrip("/")
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(link_target)
    for directory in [staging, *staging.rglob("*")]:
        if directory.is_dir() and not directory.is_symlink():
            directory.chmod(0o755)
    output = repo_dir / package.pool_path
    output.parent.mkdir(parents=True, exist_ok=True)
    # SOURCE_DATE_EPOCH makes dpkg-deb clamp file times: same inputs, same bytes.
    run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(staging), str(output)],
        env={**os.environ, "SOURCE_DATE_EPOCH": str(epoch)})
    shutil.rmtree(staging)
    return output


def packages_stanza(package: Package, deb: Path) -> str:
    content = deb.read_bytes()
    control = package.control()
    head, description = control.split("Description: ", 1)
    return (head + f"Filename: {package.pool_path}\nSize: {len(content)}\n"
            f"MD5sum: {hashlib.md5(content).hexdigest()}\nSHA1: {hashlib.sha1(content).hexdigest()}\n"
            f"SHA256: {hashlib.sha256(content).hexdigest()}\nDescription: {description}")


@dataclasses.dataclass
class Suite:
    """One dists/<suite> of one repository and the packages it lists."""

    repo_dir: Path
    suite: str
    version: str
    label: str
    origin: str
    architectures: tuple[str, ...]
    date: str
    packages: list[Package]


def write_indices(suite: Suite, debs: dict[tuple[Path, str], Path]) -> Path:
    """Packages(.gz) per architecture and the Release file that hashes them; returns the Release path."""
    dist_dir = suite.repo_dir / "dists" / suite.suite
    index_files = []
    for architecture in suite.architectures:
        listed = [package for package in suite.packages if package.architecture in (architecture, "all")]
        stanzas = [packages_stanza(package, debs[(suite.repo_dir, package.pool_path)])
                   for package in sorted(listed, key=lambda package: package.name)]
        text = "\n".join(stanzas).encode()
        relative = f"main/binary-{architecture}/Packages"
        (dist_dir / relative).parent.mkdir(parents=True, exist_ok=True)
        (dist_dir / relative).write_bytes(text)
        (dist_dir / f"{relative}.gz").write_bytes(gzip.compress(text, mtime=0))
        index_files += [relative, f"{relative}.gz"]
    date = time.strftime("%a, %d %b %Y %H:%M:%S UTC", time.gmtime(day_epoch(suite.date)))
    lines = [f"Origin: {suite.origin}", f"Label: {suite.label}", f"Suite: {suite.suite}",
             f"Version: {suite.version}", f"Codename: {suite.suite}", f"Date: {date}",
             f"Architectures: {' '.join(suite.architectures)}", "Components: main",
             f"Description: {suite.label} {suite.version} {suite.suite} (stand-in, lab/rocm_repo)"]
    for field, algorithm in (("MD5Sum", hashlib.md5), ("SHA1", hashlib.sha1), ("SHA256", hashlib.sha256)):
        lines.append(f"{field}:")
        for relative in index_files:
            content = (dist_dir / relative).read_bytes()
            lines.append(f" {algorithm(content).hexdigest()} {len(content):>16} {relative}")
    release = dist_dir / "Release"
    release.write_text("\n".join(lines) + "\n")
    return release


def day_epoch(day: str) -> int:
    return calendar.timegm(time.strptime(day, "%Y-%m-%d"))


class Signer:
    """A throw-away GNUPGHOME (short path: gpg-agent's socket name is length-limited) holding the test key."""

    def __init__(self, secret_key_file: Path) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="rocm-gpg-"))
        self.home.chmod(0o700)
        if secret_key_file.exists():
            self.gpg("--import", str(secret_key_file))
        else:
            self.gpg("--passphrase", "", "--quick-generate-key", KEY_UID, "ed25519", "sign", "never")
            secret = self.gpg("--armor", "--export-secret-keys").stdout
            secret_key_file.parent.mkdir(parents=True, exist_ok=True)
            secret_key_file.touch(mode=0o600)
            secret_key_file.write_text(secret)
        listing = self.gpg("--with-colons", "--list-secret-keys").stdout
        self.fingerprint = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))

    def gpg(self, *args: str) -> subprocess.CompletedProcess:
        return run(["gpg", "--homedir", str(self.home), "--batch", "--yes", "--pinentry-mode", "loopback", *args])

    def public_key(self) -> str:
        return self.gpg("--armor", "--export", self.fingerprint).stdout

    def sign(self, release: Path) -> None:
        signer = ("--local-user", self.fingerprint, "--passphrase", "", "--digest-algo", "SHA512")
        self.gpg(*signer, "--clearsign", "--output", str(release.with_name("InRelease")), str(release))
        self.gpg(*signer, "--armor", "--detach-sign", "--output", str(release.with_name("Release.gpg")), str(release))

    def close(self) -> None:
        subprocess.run(["gpgconf", "--homedir", str(self.home), "--kill", "all"], capture_output=True,
                       timeout=COMMAND_TIMEOUT, check=False)
        shutil.rmtree(self.home, ignore_errors=True)


def read_tools(tools_dir: Path) -> dict[str, bytes]:
    missing = [name for name in TOOL_NAMES if not (tools_dir / name).is_file()]
    if missing:
        raise SystemExit(
            f"build_repo: missing {', '.join(str(tools_dir / name) for name in missing)}: the rocminfo and "
            "amd-smi stand-ins (stdlib Python scripts that read the simulated KFD topology) are packaged "
            "from there; write them first or pass --tools-dir.")
    tools = {name: (tools_dir / name).read_bytes() for name in TOOL_NAMES}
    # They are installed as executables (/opt/rocm-<version>/bin/...), each on its own.
    not_scripts = [name for name, content in tools.items() if not content.startswith(b"#!")]
    if not_scripts:
        raise SystemExit(f"build_repo: {', '.join(str(tools_dir / name) for name in not_scripts)} must be "
                         "executable scripts starting with '#!' (e.g. #!/usr/bin/env python3).")
    return tools


def parse_kernels(specs: list[str]) -> dict[str, list[str]]:
    """SUITE=RELEASE arguments -> {suite: [releases]}, each release usable in a Debian package name."""
    kernels: dict[str, list[str]] = {}
    for spec in specs:
        suite, _, kernel_release = spec.partition("=")
        if not re.fullmatch(r"[a-z]+", suite) or not re.fullmatch(r"\d+\.\d+[a-z0-9.+-]*", kernel_release):
            raise SystemExit(f"build_repo: --kernel {spec!r} must be SUITE=RELEASE, the release usable in a Debian "
                             "package name (lower-case letters, digits, '.', '+', '-'), e.g. "
                             "noble=6.8.0-49-generic.")
        kernels.setdefault(suite, []).append(kernel_release)
    return {suite: sorted(set(releases)) for suite, releases in sorted(kernels.items())}


def input_fingerprint(tools: dict[str, bytes], kernels: dict[str, list[str]]) -> str:
    digest = hashlib.sha256(LAYOUT_VERSION.encode())
    digest.update(Path(__file__).read_bytes())
    for name in TOOL_NAMES:
        digest.update(name.encode() + b"\0" + tools[name])
    digest.update(json.dumps(kernels, sort_keys=True).encode())
    return digest.hexdigest()


def plan(tools: dict[str, bytes], kernels: dict[str, list[str]], out: Path) -> list[Suite]:
    suites = []
    for release in RELEASES:
        for suite, os_version in SUITES.items():
            suites.append(Suite(out / rocm_repo_path(release), suite, release.rocm, ORIGIN, ORIGIN, ("amd64",),
                                release.date, rocm_packages(release, os_version, tools)))
            suites.append(Suite(out / amdgpu_repo_path(release), suite, release.amdgpu, ORIGIN, ORIGIN,
                                ("amd64", "i386"), release.date, amdgpu_packages(release, os_version)))
    for suite, kernel_releases in kernels.items():
        suites.append(Suite(out / KERNEL_REPO, suite, "standin", KERNEL_REPO, KERNEL_REPO,
                            ("amd64",), RELEASES[0].date, kernel_suite_packages(suite, kernel_releases)))
    return suites


def manifest(suites: list[Suite], out: Path, fingerprint: str) -> dict:
    def versions(repo_dir: Path) -> dict:
        return {suite.suite: {package.name: package.version for package in suite.packages}
                for suite in suites if suite.repo_dir == repo_dir}

    return {
        "origin": ORIGIN,
        "key": KEY_PATH,
        "key_fingerprint": fingerprint,
        "releases": [{
            "rocm_version": release.rocm,
            "rocm_url_version": url_version(release.rocm),
            "rocm_repo": rocm_repo_path(release),
            "amdgpu_release": release.amdgpu,
            "amdgpu_url_version": url_version(release.amdgpu),
            "amdgpu_repo": amdgpu_repo_path(release),
            "suites": list(SUITES),
            "rocm_packages": versions(out / rocm_repo_path(release)),
            "amdgpu_packages": versions(out / amdgpu_repo_path(release)),
        } for release in RELEASES],
        "kernel_repo": KERNEL_REPO,
        "kernel_packages": versions(out / KERNEL_REPO),
    }


def build(out: Path, tools: dict[str, bytes], kernels: dict[str, list[str]], build_dir: Path) -> dict:
    suites = plan(tools, kernels, out)
    for top in ("rocm", "amdgpu", KERNEL_REPO):
        shutil.rmtree(out / top, ignore_errors=True)
    staging_root = Path(tempfile.mkdtemp(prefix="staging-", dir=build_dir))
    jobs = {}
    with ThreadPoolExecutor(max_workers=4) as pool:
        for suite in suites:
            epoch = day_epoch(suite.date)
            for package in suite.packages:
                jobs[(suite.repo_dir, package.pool_path)] = pool.submit(
                    build_deb, package, suite.repo_dir, staging_root, epoch)
        debs = {key: job.result() for key, job in jobs.items()}
    shutil.rmtree(staging_root)
    signer = Signer(build_dir / "signing-key.asc")
    try:
        for suite in suites:
            signer.sign(write_indices(suite, debs))
        (out / KEY_PATH).write_text(signer.public_key())
        fingerprint = signer.fingerprint
    finally:
        signer.close()
    result = manifest(suites, out, fingerprint)
    (out / MANIFEST).write_text(json.dumps(result, indent=2) + "\n")
    return result


def describe(result: dict, out: Path, state: str) -> str:
    lines = [f"ROCm stand-in repository in {out} ({state}); serve it with serve.py, base URL = the server's root",
             f"  key            {result['key']}  (test key {result['key_fingerprint']})"]
    for release in result["releases"]:
        suites = " ".join(release["suites"])
        lines.append(f"  ROCm {release['rocm_version']:<9} {release['rocm_repo']:<24} {suites} main  "
                     f"rocm {release['rocm_packages']['jammy']['rocm']}")
        lines.append(f"  amdgpu {release['amdgpu_release']:<7} {release['amdgpu_repo']:<24} {suites} main  "
                     f"amdgpu-dkms {release['amdgpu_packages']['jammy']['amdgpu-dkms']}")
    for suite, packages in result["kernel_packages"].items():
        lines.append(f"  kernel         {result['kernel_repo']:<24} {suite} main  {' '.join(packages)}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="web root to build the repository into")
    parser.add_argument("--kernel", action="append", metavar="SUITE=RELEASE",
                        help="a kernel whose packages kernel-standin serves in SUITE (repeatable; default: "
                             f"{DEFAULT_KERNEL_SUITE}=<uname -r>)")
    parser.add_argument("--tools-dir", type=Path, default=DEFAULT_TOOLS_DIR,
                        help="where the rocminfo and amd-smi stand-ins are (default: lab/rocm_tools)")
    parser.add_argument("--force", action="store_true", help="rebuild even when the inputs did not change")
    args = parser.parse_args()
    kernels = parse_kernels(args.kernel or [f"{DEFAULT_KERNEL_SUITE}={platform.release()}"])
    tools = read_tools(args.tools_dir)
    out = args.out.resolve()
    build_dir = out / ".build"
    build_dir.mkdir(parents=True, exist_ok=True)
    build_dir.chmod(0o700)
    stamp = build_dir / "inputs.sha256"
    fingerprint = input_fingerprint(tools, kernels)
    up_to_date = (not args.force and stamp.exists() and stamp.read_text() == fingerprint
                  and (out / MANIFEST).exists() and (build_dir / "signing-key.asc").exists())
    if up_to_date:
        result = json.loads((out / MANIFEST).read_text())
    else:
        stamp.unlink(missing_ok=True)
        result = build(out, tools, kernels, build_dir)
        stamp.write_text(fingerprint)
    print(describe(result, out, "up to date" if up_to_date else "built"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
