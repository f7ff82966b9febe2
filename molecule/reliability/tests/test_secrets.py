"""Secrets and exposure: the HF token and the API key stay where they belong, and the API is only where it is meant
to be.

The run under test is a full site.yml at -vvv that rotates the API key (a new key restarts the service and the
smoke test uses it), with the scenario's HF token in play (the weights come from a gated hub stand-in).
"""

from __future__ import annotations

import secrets
import subprocess

import pytest
import requests
import yaml

from reliability_lab import EPHEMERAL, NODE, REPO, node_sh, run_playbook, service_state, service_url

HOST_VARS = REPO / "molecule" / "reliability" / "host_vars" / "reliability-gpu-node1.yml"
ENV_FILE = "/etc/vllm/vllm.env"
LAST_GOOD_ENV_FILE = "/etc/vllm/last-good/vllm.env"


@pytest.fixture(scope="module")
def hf_token() -> str:
    return yaml.safe_load(HOST_VARS.read_text())["model_weights_hf_token"]


@pytest.fixture(scope="module")
def rotation():
    """site.yml -vvv with a new API key; yields (run, new key). The key file of the scenario is updated, so later
    runs keep the new key."""
    new_key = secrets.token_hex(24)
    before = service_state()
    run = run_playbook("site.yml", {"vllm_service_api_key": new_key}, args=("-vvv",), log_name="secrets-vvv")
    (EPHEMERAL / "api_key").write_text(new_key)
    return run, new_key, before


def test_a_rotated_key_restarts_the_service(rotation, record):
    """Rotating the API key"""
    run, _, before = rotation
    after = service_state()
    record(done="site.yml -vvv with a new vllm_service_api_key",
           observed=f"rc {run.rc}; the environment file changed and the service restarted "
                    f"({'yes' if after['InvocationID'] != before['InvocationID'] else 'NO'}); smoke test passed")
    assert run.rc == 0, "site.yml failed (reports/reliability/logs/secrets-vvv.log)"
    assert after["InvocationID"] != before["InvocationID"]


def test_secrets_appear_nowhere_but_the_root_only_file(rotation, hf_token, record):
    """The HF token and the API key in a -vvv run"""
    run, key, _ = rotation
    secrets_by_name = {"HF token": hf_token, "API key": key}
    places = {
        "ansible output (-vvv)": run.output,
        "journal": node_sh("journalctl --no-pager --output=cat"),
        "process command lines": node_sh("cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' '", check=False),
        "unit file": node_sh("cat /etc/systemd/system/vllm.service"),
        "container command": node_sh("docker inspect --format '{{json .Config.Cmd}} {{json .Args}}' vllm"),
        "smoke-test reports": "".join(path.read_text() for path in (REPO / "reports" / "smoke").glob("*.json")),
    }
    # Every file on the node that holds either secret. Besides the environment file (and its copy kept for a
    # rollback) only the container runtime's own state may: Docker and containerd keep an --env-file's variables
    # in the container's configuration. Each of them must be unreadable for anyone but root.
    found = node_sh(f"grep -rlF -e {hf_token} -e {key} /etc /srv /var /root /opt /usr/local /home /run /tmp "
                    "2>/dev/null || true").split()
    # Ansible's own temporary files of the download job the fault tests killed with SIGKILL (a power cut leaves
    # them too) hold the module's arguments; they are in root's 0700 home and are checked to be unreadable.
    allowed = (ENV_FILE, LAST_GOOD_ENV_FILE, "/var/lib/docker/", "/var/lib/containerd/", "/run/containerd/",
               "/root/.ansible/tmp/")
    files = sorted(path for path in found if not path.startswith(allowed))
    readable = [path for path in found if subprocess.run(
        ["docker", "exec", NODE, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "cat", path],
        capture_output=True).returncode == 0]
    leaks = [f"{name} in {place}" for place, text in places.items() for name, value in secrets_by_name.items()
             if value in text]
    mode = node_sh(f"stat -c '%a %U %G' {ENV_FILE}").strip()
    record(done="grep for both secrets in the run's -vvv output, the node's journal, every process command line, "
                "the unit, the container's command, the smoke reports and every file on the node; read each file "
                "that holds one as an unprivileged user",
           observed=f"found in: {', '.join(leaks + files) or 'nothing else'}; held in {len(found)} root-only files "
                    f"(the environment file {mode}, its rollback copy, the container runtime's state); readable "
                    f"without root: {', '.join(readable) or 'none'}")
    assert leaks == []
    assert files == []
    assert readable == []
    assert mode == "600 root root"
    assert key in node_sh(f"cat {ENV_FILE}")


def test_requests_without_the_key_are_refused(rotation, record):
    """Requests without the API key"""
    _, key, _ = rotation
    url = service_url()
    without = requests.get(f"{url}/v1/models", timeout=10)
    wrong = requests.get(f"{url}/v1/models", headers={"Authorization": "Bearer wrong-key"}, timeout=10)
    right = requests.get(f"{url}/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=10)
    health = requests.get(f"{url}/health", timeout=10)
    record(done="GET /v1/models without, with a wrong and with the right key; GET /health",
           observed=f"{without.status_code}, {wrong.status_code}, {right.status_code}; /health {health.status_code}")
    assert (without.status_code, wrong.status_code, right.status_code) == (401, 401, 200)
    assert without.json() == {"error": "Unauthorized"}


def test_the_port_listens_only_on_the_configured_address(record):
    """Where the API listens"""
    address = service_url().split("//")[1].split(":")[0]
    listeners = sorted({line.split()[3] for line in node_sh("ss -Htln 'sport = :8000'").splitlines()})
    loopback = subprocess.run(["docker", "exec", "reliability-gpu-node1", "curl", "-s", "--max-time", "3",
                               "http://127.0.0.1:8000/health"], capture_output=True, text=True)
    record(done="ss -tln on the node; /health through 127.0.0.1",
           observed=f"listeners on port 8000: {', '.join(listeners)}; loopback "
                    f"{'answers' if loopback.returncode == 0 else 'refused'}")
    assert listeners == [f"{address}:8000"]
    assert loopback.returncode != 0


def test_the_repository_holds_no_secret(record):
    """Secrets in the repository"""
    scan = subprocess.run(["python3", str(REPO / "scripts" / "check_secrets.py")], cwd=REPO, capture_output=True,
                          text=True)
    record(done="scripts/check_secrets.py over every tracked file (also a pre-commit hook and part of make lint)",
           observed=scan.stdout.strip().splitlines()[-1] if scan.stdout.strip() else f"exit {scan.returncode}")
    assert scan.returncode == 0, scan.stdout + scan.stderr
