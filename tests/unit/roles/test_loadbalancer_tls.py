"""TLS at the loadbalancer role's HAProxy: the role's checks refuse a bad certificate, key or setting before any
change, with a message naming the variable and the fix; HAProxy 2.6 accepts the configuration; a real HAProxy with
it, in front of the vLLM stand-in, is reached by curl and the `openai` SDK over a verified chain (chat streamed, a
tool call, reasoning), while a client without the CA, TLS 1.0/1.1 and weak ciphers are refused and plain HTTP is
redirected, closed or served as configured; the role's tasks keep the old certificate until HAProxy has accepted
the new one; the certificates' expiry metric is written for the node exporter.

The certificates are made here with `cryptography` (tests/helpers/tls_certificates.py): a root CA, an intermediate,
and a server certificate for localhost and 127.0.0.1.
"""

import json
import os
import pathlib
import re
import shutil
import ssl
import subprocess
import sys
import types

import openai
import pytest
import requests
import yaml
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.helpers.tls_certificates import CertificateAuthority, certificate_pem, key_pem, new_key, write
from lab.vllm import test_vllm_standin as standin  # the stand-in's node layout and Server
from tests.unit.roles import test_loadbalancer as balancer  # the HAProxy runner, the role's configuration helpers

REPO = pathlib.Path(__file__).resolve().parents[3]
ROLE = REPO / "roles" / "loadbalancer"
API_KEY = "sk-tls-test-5c1e9a7d"
METRIC = "loadbalancer_tls_certificate_expiry_timestamp_seconds"
needs_haproxy = balancer.needs_haproxy


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A root CA (what clients trust, in ca_file), an intermediate, and a server certificate it issued for
    localhost and 127.0.0.1 (`chain`: the server certificate, then the intermediate)."""
    directory = tmp_path_factory.mktemp("pki")
    root = CertificateAuthority("Test Root CA")
    intermediate = CertificateAuthority("Test Intermediate CA", parent=root)
    certificate, key = intermediate.issue(("localhost", "127.0.0.1"))
    return types.SimpleNamespace(root=root, intermediate=intermediate, certificate=certificate, key=key,
                                 chain=certificate_pem(certificate) + intermediate.pem, key_pem=key_pem(key),
                                 ca_file=write(directory / "ca.pem", root.pem))


def _tls(pki, **overrides) -> dict:
    """The role's variables for TLS with the test's certificate, chain and key."""
    return {"loadbalancer_tls_certificate": pki.chain, "loadbalancer_tls_private_key": pki.key_pem, **overrides}


def _renderer(role_renderer, **overrides):
    return balancer._renderer(role_renderer, **overrides)


# --- refused before any change ----------------------------------------------------------------------------------

def _tasks(name: str) -> list[dict]:
    return yaml.safe_load((ROLE / "tasks" / name).read_text())


def _refusal(renderer, tasks_file: str = "validate.yml"):
    """What the play stops at: the message of the first assert of the tasks file that fails (with its `when` and
    its vars), or None when every one passes."""
    for task in _tasks(tasks_file):
        check = task.get("ansible.builtin.assert")
        if check is None or ("when" in task and not renderer.render("{{ " + task["when"] + " }}")):
            continue
        if not renderer.render("{{ " + check["that"] + " }}", task.get("vars")):
            message = renderer.render(check["fail_msg"], task.get("vars"))
            return "\n".join(message) if isinstance(message, list) else message
    return None


def _warnings(renderer) -> list[str]:
    """The items of the role's warning task, as it would print them."""
    (task,) = [task for task in _tasks("validate.yml") if "ansible.builtin.debug" in task]
    return list(renderer.render(task["loop"])) if renderer.render("{{ " + task["when"] + " }}") else []


def _issued(ca, **issue) -> dict:
    """Variables for a server certificate `ca` issued with these options, with its own key."""
    certificate, key = ca.issue(**issue)
    return {"loadbalancer_tls_certificate": certificate_pem(certificate), "loadbalancer_tls_private_key": key_pem(key)}


def _under_an_expired_intermediate(pki, tmp):
    expired = CertificateAuthority("Expired Intermediate CA", parent=pki.root, days=-1, not_before_days=-30)
    variables = _issued(expired)
    variables["loadbalancer_tls_certificate"] += expired.pem
    return variables


def _under_an_expired_ca(pki, tmp):
    expired = CertificateAuthority("Expired Root CA", days=-1, not_before_days=-30)
    return {**_issued(expired), "loadbalancer_tls_ca_file": str(write(tmp / "expired-ca.pem", expired.pem))}


# Each: the variables (from the test's PKI and tmp_path) and what the refusal says: the variable and the fix.
BAD_INPUTS = [
    ("key-of-another-certificate", lambda pki, tmp: _tls(pki, loadbalancer_tls_private_key=key_pem(new_key())),
     ["loadbalancer_tls_private_key does not belong to the server certificate in loadbalancer_tls_certificate",
      "Give the key the certificate was issued for"]),
    ("expired", lambda pki, tmp: _issued(pki.root, days=-1, not_before_days=-30),
     ["loadbalancer_tls_certificate: the server certificate (CN=localhost) expired on", "renew it",
      "docs/runbooks/rotate-tls-certificate.md"]),
    ("expires-within-the-refusal-threshold", lambda pki, tmp: _issued(pki.root, days=3),
     ["expires on", "within loadbalancer_tls_expiry_refuse_days (7)", "renew it",
      "or lower loadbalancer_tls_expiry_refuse_days to deploy it anyway"]),
    ("not-valid-yet", lambda pki, tmp: _issued(pki.root, not_before_days=2),
     ["the server certificate (CN=localhost) is not valid before", "correct the controller's clock"]),
    ("intermediate-expired", _under_an_expired_intermediate,
     ["loadbalancer_tls_certificate: intermediate certificate 2 (CN=Expired Intermediate CA) expired on",
      "renew it"]),
    ("ca-expired", _under_an_expired_ca,
     ["loadbalancer_tls_ca_file: the CA that issued the chain (CN=Expired Root CA) expired on",
      "get a certificate from a current CA"]),
    ("intermediate-first",
     lambda pki, tmp: _tls(pki, loadbalancer_tls_certificate=pki.intermediate.pem + certificate_pem(pki.certificate)),
     ["loadbalancer_tls_certificate: the key belongs to certificate 2 (CN=localhost)",
      "the server certificate must come first"]),
    ("intermediate-missing",
     lambda pki, tmp: _tls(pki, loadbalancer_tls_certificate=certificate_pem(pki.certificate),
                           loadbalancer_tls_ca_file=str(pki.ca_file)),
     ["loadbalancer_tls_certificate does not lead to a CA of loadbalancer_tls_ca_file",
      "issued by CN=Test Intermediate CA", "Add the missing intermediate certificates"]),
    ("unrelated-certificate-in-the-chain",
     lambda pki, tmp: _tls(pki, loadbalancer_tls_certificate=certificate_pem(pki.certificate) + pki.root.pem),
     ["certificate 2 (CN=Test Root CA) did not issue certificate 1 (CN=localhost",
      "each intermediate right after the certificate it issued"]),
    ("another-ca",
     lambda pki, tmp: _tls(pki, loadbalancer_tls_ca_file=str(write(tmp / "other.pem", CertificateAuthority().pem))),
     ["does not lead to a CA of loadbalancer_tls_ca_file",
      "point loadbalancer_tls_ca_file at the CA your clients trust"]),
    ("name-not-covered", lambda pki, tmp: _tls(pki, loadbalancer_tls_server_name="llm.example.com"),
     ["the server certificate is for localhost, 127.0.0.1, not for llm.example.com (loadbalancer_tls_server_name)",
      "get a certificate whose subjectAltName lists it, or correct loadbalancer_tls_server_name"]),
    ("wildcard-covers-one-label-only",
     lambda pki, tmp: {**_issued(pki.root, names=("*.example.com",)),
                       "loadbalancer_tls_server_name": "a.b.example.com"},
     ["the server certificate is for *.example.com, not for a.b.example.com"]),
    ("no-subject-alt-name",
     lambda pki, tmp: {**_issued(pki.root, with_names=False), "loadbalancer_tls_server_name": "localhost"},
     ["the server certificate has no subjectAltName", "get one that lists it"]),
    ("client-certificate", lambda pki, tmp: _issued(pki.root, usages=(ExtendedKeyUsageOID.CLIENT_AUTH,)),
     ["extended key usage does not include serverAuth", "get a certificate issued for TLS servers"]),
    ("key-in-the-certificate-variable",
     lambda pki, tmp: _tls(pki, loadbalancer_tls_certificate=pki.chain + pki.key_pem),
     ["loadbalancer_tls_certificate holds a private key", "keep the key in loadbalancer_tls_private_key",
      "replace this key"]),
    ("not-pem", lambda pki, tmp: _tls(pki, loadbalancer_tls_certificate="MIIBjzCCATWgAwIBAgIU (no armour)"),
     ["loadbalancer_tls_certificate holds no certificate in PEM", "openssl x509 -inform der"]),
    ("key-with-a-passphrase", lambda pki, tmp: _tls(pki, loadbalancer_tls_private_key=key_pem(pki.key, b"secret")),
     ["loadbalancer_tls_private_key is encrypted with a passphrase", "remove the passphrase"]),
    ("rsa-1024", lambda pki, tmp: _issued(pki.root, key=new_key("rsa", 1024)),
     ["loadbalancer_tls_private_key is a 1024-bit RSA key", "at least 2048 bits"]),
    ("key-without-certificate", lambda pki, tmp: {"loadbalancer_tls_private_key": pki.key_pem},
     ["neither loadbalancer_tls_certificate nor loadbalancer_tls_certificate_file is set",
      "or set loadbalancer_tls_enabled to false"]),
    ("certificate-without-key", lambda pki, tmp: {"loadbalancer_tls_certificate": pki.chain},
     ["neither loadbalancer_tls_private_key nor loadbalancer_tls_private_key_file is set"]),
    ("enabled-without-anything", lambda pki, tmp: {"loadbalancer_tls_enabled": True},
     ["TLS is on (loadbalancer_tls_enabled) but neither loadbalancer_tls_certificate nor"]),
    ("text-and-file",
     lambda pki, tmp: _tls(pki, loadbalancer_tls_certificate_file=str(write(tmp / "chain.pem", pki.chain))),
     ["loadbalancer_tls_certificate and loadbalancer_tls_certificate_file are both set: keep one"]),
    ("relative-file",
     lambda pki, tmp: {"loadbalancer_tls_certificate_file": "files/lb.pem",
                       "loadbalancer_tls_private_key": pki.key_pem},
     ["loadbalancer_tls_certificate_file is 'files/lb.pem', a relative path", "give the absolute path"]),
    ("missing-key-file",
     lambda pki, tmp: {"loadbalancer_tls_certificate": pki.chain,
                       "loadbalancer_tls_private_key_file": str(tmp / "absent.key")},
     ["loadbalancer_tls_private_key_file is", "absent.key, which is not a file on the controller",
      "correct the path"]),
    ("missing-ca-file", lambda pki, tmp: _tls(pki, loadbalancer_tls_ca_file=str(tmp / "absent-ca.pem")),
     ["loadbalancer_tls_ca_file is", "absent-ca.pem, which is not a file on the controller"]),
    ("tls-port-taken-by-plain-http",
     lambda pki, tmp: _tls(pki, loadbalancer_tls_port=8000, loadbalancer_http_mode="redirect"),
     ["loadbalancer_tls_port and loadbalancer_port are both 8000",
      "give loadbalancer_port another one, or set loadbalancer_http_mode to close"]),
    ("tls-port-out-of-range", lambda pki, tmp: _tls(pki, loadbalancer_tls_port=70000),
     ["loadbalancer_tls_port is 70000: give a port number from 1 to 65535"]),
    ("negative-threshold", lambda pki, tmp: _tls(pki, loadbalancer_tls_expiry_refuse_days=-1),
     ["loadbalancer_tls_expiry_refuse_days is -1: give 0 or more"]),
    ("negative-hsts", lambda pki, tmp: _tls(pki, loadbalancer_tls_hsts_max_age=-5),
     ["loadbalancer_tls_hsts_max_age is -5: give 0 or more"]),
]


def _key_lines(variables: dict) -> set[str]:
    """The lines of every private key among the variables' values, PEM armour left out."""
    return {line for value in variables.values() if isinstance(value, str) and "PRIVATE KEY" in value
            for line in value.split("PRIVATE KEY-----", 1)[1].splitlines() if line and "-----" not in line}


@pytest.mark.parametrize(("build", "expected"), [case[1:] for case in BAD_INPUTS], ids=[case[0] for case in BAD_INPUTS])
def test_bad_tls_input_is_refused_by_the_roles_checks(role_renderer, pki, tmp_path, build, expected):
    variables = build(pki, tmp_path)
    refusal = _refusal(_renderer(role_renderer, **variables))
    assert refusal is not None, "accepted"
    missing = [text for text in expected if text not in refusal]
    assert not missing, refusal
    assert not [line for line in _key_lines(variables) if line in refusal], "the refusal shows the key"


@pytest.mark.parametrize("variables", [
    lambda pki, tmp: _tls(pki, loadbalancer_tls_ca_file=str(pki.ca_file), loadbalancer_tls_server_name="localhost"),
    lambda pki, tmp: _tls(pki, loadbalancer_tls_server_name="127.0.0.1", loadbalancer_http_mode="redirect",
                          loadbalancer_tls_port=8443, loadbalancer_tls_hsts_max_age=31536000),
    lambda pki, tmp: {"loadbalancer_tls_certificate_file": str(write(tmp / "chain.pem", pki.chain)),
                      "loadbalancer_tls_private_key_file": str(write(tmp / "server.key", pki.key_pem))},
    lambda pki, tmp: {**_issued(pki.root, names=("*.example.com",)), "loadbalancer_tls_server_name": "LLM.example.com"},
    lambda pki, tmp: _tls(pki, loadbalancer_tls_enabled=False, loadbalancer_tls_private_key="not a key"),
    lambda pki, tmp: {},
], ids=["ca-and-name", "ip-name-redirect", "files", "wildcard", "turned-off", "plain-http"])
def test_good_tls_input_passes_the_roles_checks(role_renderer, pki, tmp_path, variables):
    renderer = _renderer(role_renderer, **variables(pki, tmp_path))
    assert _refusal(renderer) is None
    assert _warnings(renderer) == []


def test_a_certificate_that_expires_soon_passes_with_a_warning(role_renderer, pki):
    renderer = _renderer(role_renderer, **_issued(pki.root, days=20))
    assert _refusal(renderer) is None
    (warning,) = _warnings(renderer)
    assert "loadbalancer_tls_certificate: the server certificate (CN=localhost) expires on" in warning
    assert "renew it soon (docs/runbooks/rotate-tls-certificate.md)" in warning
    assert "loadbalancer_tls_expiry_warn_days (30)" in warning
    quieter = _renderer(role_renderer, **_issued(pki.root, days=20), loadbalancer_tls_expiry_warn_days=10)
    assert _warnings(quieter) == []


def test_a_certificate_without_names_is_accepted_with_a_warning_when_no_name_is_given(role_renderer, pki):
    renderer = _renderer(role_renderer, **_issued(pki.root, with_names=False))
    assert _refusal(renderer) is None
    assert ["no subjectAltName" in warning and "Set loadbalancer_tls_server_name" in warning
            for warning in _warnings(renderer)] == [True]


@pytest.mark.parametrize(("variables", "refused"), [
    ({}, False),
    # Plain HTTP moves away from vLLM's port, but HTTPS would now be on it.
    ({"loadbalancer_port": 8080, "loadbalancer_tls_port": 8000}, True),
    ({"loadbalancer_port": 8000, "loadbalancer_tls_port": 9443}, False),  # plain HTTP closed: 8000 is free
    ({"loadbalancer_port": 8000, "loadbalancer_tls_port": 9443, "loadbalancer_http_mode": "serve"}, True),
], ids=["defaults", "https-on-a-servers-port", "closed-http-port-unused", "served-http-on-a-servers-port"])
def test_preflight_refuses_a_balancer_that_would_send_requests_to_itself(role_renderer, pki, variables, refused):
    """node01 serves on 10.30.0.11:8000; the balancer listens there too."""
    renderer = _renderer(role_renderer, **_tls(pki), loadbalancer_listen_address="10.30.0.11", **variables)
    refusal = _refusal(renderer, "preflight.yml")
    assert (refusal is not None) == refused, refusal
    if refused:
        assert "which is also a backend server's address" in refusal and "loadbalancer_tls_port" in refusal


# --- the configuration ------------------------------------------------------------------------------------------

def _sections(role_renderer, pki, **overrides) -> dict[str, list[str]]:
    return balancer._sections(_renderer(role_renderer, **_tls(pki), **overrides).template("haproxy.cfg.j2"))


INTERMEDIATE_CIPHERS = ("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
                        "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305")
TLS13_SUITES = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"


def test_plain_http_without_a_certificate(role_renderer):
    sections = balancer._sections(_renderer(role_renderer).template("haproxy.cfg.j2"))
    assert not any("ssl" in line for lines in sections.values() for line in lines)
    assert sections["frontend vllm_api"][0] == "bind 10.20.0.5:8000"


def test_tls_closes_plain_http_by_default_with_the_intermediate_policy(role_renderer, pki):
    sections = _sections(role_renderer, pki)
    assert sections["global"][-4:] == [
        "ssl-default-bind-curves X25519:prime256v1:secp384r1",
        f"ssl-default-bind-ciphers {INTERMEDIATE_CIPHERS}",
        f"ssl-default-bind-ciphersuites {TLS13_SUITES}",
        "ssl-default-bind-options prefer-client-ciphers ssl-min-ver TLSv1.2 no-tls-tickets",
    ]
    frontend = sections["frontend vllm_api"]
    assert re.fullmatch(r"bind 10\.20\.0\.5:443 ssl crt /etc/haproxy/tls/vllm_api-[0-9a-f]{16}\.pem "
                        r"alpn h2,http/1\.1", frontend[0]), frontend[0]
    assert not any(line.startswith("bind 10.20.0.5:8000") for line in frontend)
    assert not any("redirect" in line or "Strict-Transport-Security" in line for line in frontend)
    assert frontend[1:] == ["acl client_path path /health", "acl client_path path_beg /v1/",
                            "http-request deny deny_status 404 unless client_path", "default_backend vllm"]


def test_the_modern_policy_is_tls_1_3_only(role_renderer, pki):
    tls_lines = [line for line in _sections(role_renderer, pki, loadbalancer_tls_policy="modern")["global"]
                 if line.startswith("ssl-")]
    assert tls_lines == ["ssl-default-bind-curves X25519:prime256v1:secp384r1",
                         f"ssl-default-bind-ciphersuites {TLS13_SUITES}",
                         "ssl-default-bind-options prefer-client-ciphers ssl-min-ver TLSv1.3 no-tls-tickets"]


@pytest.mark.parametrize(("variables", "location"), [
    ({}, "https://%[req.hdr(host),field(1,:)]%[pathq]"),
    ({"loadbalancer_tls_port": 8443}, "https://%[req.hdr(host),field(1,:)]:8443%[pathq]"),
    ({"loadbalancer_tls_server_name": "llm.example.com"}, "https://llm.example.com%[pathq]"),
], ids=["host-header", "other-port", "server-name"])
def test_redirect_mode_sends_plain_http_to_https(role_renderer, pki, variables, location):
    frontend = _sections(role_renderer, pki, loadbalancer_http_mode="redirect", **variables)["frontend vllm_api"]
    assert frontend[0] == "bind 10.20.0.5:8000"
    # Before the path filter: a plain request learns nothing but where HTTPS is.
    assert frontend[2] == f"http-request redirect code 308 location {location} unless {{ ssl_fc }}"


def test_serve_mode_and_hsts(role_renderer, pki):
    frontend = _sections(role_renderer, pki, loadbalancer_http_mode="serve",
                         loadbalancer_tls_hsts_max_age=31536000)["frontend vllm_api"]
    assert frontend[0] == "bind 10.20.0.5:8000" and frontend[1].startswith("bind 10.20.0.5:443 ssl crt ")
    assert not any("redirect" in line for line in frontend)
    assert 'http-after-response set-header Strict-Transport-Security "max-age=31536000" if { ssl_fc }' in frontend


def test_the_pem_file_holds_the_chain_then_the_key_and_is_named_after_the_certificate(role_renderer, pki):
    renderer = _renderer(role_renderer, **_tls(pki))
    assert renderer.var("_loadbalancer_tls_pem") == pki.chain + pki.key_pem
    path = renderer.var("_loadbalancer_tls_pem_path")
    assert _renderer(role_renderer, **_tls(pki)).var("_loadbalancer_tls_pem_path") == path
    renewed = _renderer(role_renderer, **_issued(pki.intermediate))
    assert renewed.var("_loadbalancer_tls_pem_path") != path


def test_the_key_is_written_root_only_and_never_logged():
    tasks = {task["name"]: task for task in _tasks("configure.yml")}
    directory = tasks["Create the directory of the TLS certificates (root-only)"]["ansible.builtin.file"]
    assert (directory["owner"], directory["mode"]) == ("root", "0700")
    write_task = tasks["Write the certificate, its intermediates and its private key for HAProxy (root-only)"]
    assert write_task["no_log"] is True
    assert (write_task["ansible.builtin.copy"]["owner"], write_task["ansible.builtin.copy"]["mode"]) == ("root", "0600")
    names = list(tasks)
    # The configuration that names the new file is checked (haproxy -c) with it; old files go only after that.
    assert names.index("Write the certificate, its intermediates and its private key for HAProxy (root-only)") < \
        names.index("Write the HAProxy configuration (checked by haproxy before it replaces the old one)") < \
        names.index("Remove them, their keys with them")


def _write_pem(role_renderer, path: pathlib.Path, variables: dict) -> pathlib.Path:
    """The PEM file as the role writes it, root-only."""
    path.write_text(_renderer(role_renderer, **variables).var("_loadbalancer_tls_pem"))
    path.chmod(0o600)
    return path


@needs_haproxy
@pytest.mark.parametrize("variables", [
    {},
    {"loadbalancer_http_mode": "redirect", "loadbalancer_tls_hsts_max_age": 600,
     "loadbalancer_tls_server_name": "localhost", "loadbalancer_tls_port": 8443},
    {"loadbalancer_http_mode": "serve", "loadbalancer_tls_policy": "modern", "loadbalancer_stats_enabled": False},
], ids=["defaults", "redirect-hsts", "serve-modern"])
def test_haproxy_accepts_the_tls_configuration(role_renderer, pki, tmp_path, variables):
    settings = {**_tls(pki), "_loadbalancer_tls_pem_path": str(tmp_path / "vllm_api.pem"),
                "_loadbalancer_server_state_file": str(tmp_path / "server-state"),
                "groups": {"gpu_nodes": ["node01", "node02", "node03"]}, **variables}
    _write_pem(role_renderer, tmp_path / "vllm_api.pem", settings)
    (tmp_path / "server-state").write_text("1\n")
    result = balancer._check(_renderer(role_renderer, **settings).template("haproxy.cfg.j2"), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING" not in result.stderr and "ALERT" not in result.stderr, result.stderr


@needs_haproxy
def test_haproxy_refuses_a_key_that_does_not_match(role_renderer, pki, tmp_path):
    """What the role's `validate: haproxy -c` stops on the host, should the controller's check be skipped."""
    settings = {**_tls(pki, loadbalancer_tls_private_key=key_pem(new_key())),
                "_loadbalancer_tls_pem_path": str(tmp_path / "vllm_api.pem")}
    _write_pem(role_renderer, tmp_path / "vllm_api.pem", settings)
    result = balancer._check(_renderer(role_renderer, **settings).template("haproxy.cfg.j2"), tmp_path)
    assert result.returncode != 0
    assert "inconsistencies between private key and certificate" in result.stderr, result.stderr


# --- the expiry metric --------------------------------------------------------------------------------------------

SAMPLE = re.compile(rf'{METRIC}\{{path="(?P<path>[^"\\\n]+)"\}} (?P<value>[0-9]+)')


def _run_metric_script(role_renderer, tmp_path, directory: pathlib.Path) -> tuple[subprocess.CompletedProcess, str]:
    script = tmp_path / "haproxy-tls-expiry-metric"
    script.write_text(_renderer(role_renderer).template("haproxy-tls-expiry-metric.j2"))
    output = tmp_path / "textfile" / "loadbalancer_tls.prom"
    output.parent.mkdir(exist_ok=True)
    result = subprocess.run(["/bin/sh", str(script), str(directory), str(output)], capture_output=True, text=True,
                            timeout=30)
    return result, output.read_text()


def test_the_metric_gives_each_certificates_expiry_in_unix_time(role_renderer, pki, tmp_path):
    directory = tmp_path / "tls"
    directory.mkdir()
    soon, soon_key = pki.root.issue(days=10)
    first = _write_pem(role_renderer, directory / "vllm_api-a.pem", _tls(pki))
    second = _write_pem(role_renderer, directory / "vllm_api-b.pem", {
        "loadbalancer_tls_certificate": certificate_pem(soon), "loadbalancer_tls_private_key": key_pem(soon_key)})
    result, text = _run_metric_script(role_renderer, tmp_path, directory)
    assert result.returncode == 0, result.stderr
    lines = text.splitlines()
    assert lines[0].startswith(f"# HELP {METRIC} ") and lines[1] == f"# TYPE {METRIC} gauge"
    samples = [SAMPLE.fullmatch(line) for line in lines[2:]]
    assert all(samples), lines
    # The server certificate's notAfter (the first of each file), not the intermediate's.
    assert [(sample["path"], int(sample["value"])) for sample in samples] == [
        (str(first), int(pki.certificate.not_valid_after_utc.timestamp())),
        (str(second), int(soon.not_valid_after_utc.timestamp())),
    ]
    assert [path.name for path in (tmp_path / "textfile").iterdir()] == ["loadbalancer_tls.prom"]


def test_the_metric_leaves_out_an_unreadable_certificate_and_fails(role_renderer, pki, tmp_path):
    directory = tmp_path / "tls"
    directory.mkdir()
    good = _write_pem(role_renderer, directory / "vllm_api-a.pem", _tls(pki))
    (directory / "vllm_api-b.pem").write_text("not a certificate\n")
    result, text = _run_metric_script(role_renderer, tmp_path, directory)
    assert result.returncode == 1
    assert [match["path"] for match in map(SAMPLE.fullmatch, text.splitlines()[2:])] == [str(good)]


def test_the_metric_is_empty_without_certificates(role_renderer, tmp_path):
    directory = tmp_path / "tls"
    directory.mkdir()
    result, text = _run_metric_script(role_renderer, tmp_path, directory)
    assert result.returncode == 0, result.stderr
    assert [line.split()[1] for line in text.splitlines()] == ["HELP", "TYPE"]


def test_the_metric_script_is_valid_sh(role_renderer, tmp_path):
    """What the role's `validate: sh -n %s` runs."""
    script = tmp_path / "haproxy-tls-expiry-metric"
    script.write_text(_renderer(role_renderer).template("haproxy-tls-expiry-metric.j2"))
    result = subprocess.run(["/bin/sh", "-n", str(script)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_the_metric_units_are_valid(role_renderer, tmp_path):
    renderer = _renderer(role_renderer)
    for kind in ("service", "timer"):
        (tmp_path / f"haproxy-tls-expiry-metric.{kind}").write_text(
            renderer.template(f"haproxy-tls-expiry-metric.{kind}.j2"))
    result = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "haproxy-tls-expiry-metric.service"),
                             str(tmp_path / "haproxy-tls-expiry-metric.timer")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "haproxy-tls-expiry-metric" not in result.stderr, result.stderr
    service = (tmp_path / "haproxy-tls-expiry-metric.service").read_text().splitlines()
    assert "ExecStart=/bin/sh /usr/local/sbin/haproxy-tls-expiry-metric" in service
    assert "ReadWritePaths=/var/lib/prometheus/node-exporter" in service


# --- a real HAProxy with TLS in front of the vLLM stand-in ----------------------------------------------------

WEATHER_TOOL = standin.WEATHER_TOOL
OPENSSL = shutil.which("openssl")
CURL = shutil.which("curl")


@pytest.fixture(scope="module")
def vllm(tmp_path_factory):
    """The vLLM stand-in with the guide's flags and an API key, on a free loopback port."""
    tmp = tmp_path_factory.mktemp("vllm")
    standin.make_hf_cache(tmp / "hf")
    with standin.Server(standin.container_env(tmp), tmp, *standin.FULL_FEATURES, "--api-key", API_KEY) as server:
        yield server


def _start_proxy(role_renderer, tmp_path, pki, vllm, **variables):
    """HAProxy with the role's TLS configuration on loopback (its certificate file written as the role writes it),
    once the stand-in is in service."""
    tls_port = balancer._free_port()
    settings = {**_tls(pki), "loadbalancer_tls_port": tls_port,
                "_loadbalancer_tls_pem_path": str(tmp_path / "vllm.pem"),
                "loadbalancer_check_interval": "100ms", "loadbalancer_check_rise": 1, **variables}
    _write_pem(role_renderer, tmp_path / "vllm.pem", settings)
    proxy = balancer.HAProxy(role_renderer, tmp_path, [types.SimpleNamespace(name="node01", port=vllm.port)],
                             **settings)
    proxy.tls_port = tls_port
    proxy.wait_for_status("node01", "UP")
    return proxy


@pytest.fixture(scope="module")
def proxy(role_renderer, pki, vllm, tmp_path_factory):
    """Intermediate policy, plain HTTP redirected to the server name, HSTS."""
    started = _start_proxy(role_renderer, tmp_path_factory.mktemp("proxy"), pki, vllm,
                           loadbalancer_http_mode="redirect", loadbalancer_tls_server_name="localhost",
                           loadbalancer_tls_hsts_max_age=600)
    yield started
    started.stop()


def _client(proxy, pki, verify_with_the_ca: bool = True) -> openai.OpenAI:
    """The openai SDK against the balancer's HTTPS, with the test's CA or with the SDK's default trust store."""
    http_client = (openai.DefaultHttpxClient(verify=ssl.create_default_context(cafile=str(pki.ca_file)))
                   if verify_with_the_ca else None)
    return openai.OpenAI(base_url=f"https://127.0.0.1:{proxy.tls_port}/v1", api_key=API_KEY, max_retries=0,
                         timeout=30, http_client=http_client)


@needs_haproxy
@pytest.mark.skipif(CURL is None, reason="needs curl")
def test_curl_verifies_the_chain_and_gets_a_chat_completion(proxy, pki):
    result = subprocess.run(
        [CURL, "--silent", "--show-error", "--cacert", str(pki.ca_file),
         "--resolve", f"localhost:{proxy.tls_port}:127.0.0.1", "--header", f"Authorization: Bearer {API_KEY}",
         "--json", json.dumps({"model": standin.MODEL, "messages": [{"role": "user", "content": "What is 2+2?"}]}),
         "--write-out", "\n%{http_code} HTTP/%{http_version}",
         f"https://localhost:{proxy.tls_port}/v1/chat/completions"],
        capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    body, status = result.stdout.rsplit("\n", 1)
    assert status == "200 HTTP/2"
    assert json.loads(body)["choices"][0]["message"]["content"]


@needs_haproxy
@pytest.mark.skipif(CURL is None, reason="needs curl")
def test_curl_without_the_ca_refuses_the_certificate(proxy):
    result = subprocess.run([CURL, "--silent", "--show-error", f"https://127.0.0.1:{proxy.tls_port}/health"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 60, result.stderr  # CURLE_PEER_FAILED_VERIFICATION
    assert "unable to get local issuer certificate" in result.stderr


@needs_haproxy
def test_openai_sdk_streams_a_chat_completion_over_verified_tls(proxy, pki):
    stream = _client(proxy, pki).chat.completions.create(
        model=standin.MODEL, messages=[{"role": "user", "content": "Write about rivers"}], max_tokens=24, stream=True,
        stream_options={"include_usage": True})
    chunks = list(stream)
    deltas = [chunk.choices[0].delta.content for chunk in chunks if chunk.choices and chunk.choices[0].delta.content]
    assert len(deltas) > 5 and "".join(deltas).strip()
    assert [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices][-1] == "length"
    assert chunks[-1].usage.completion_tokens == 24


@needs_haproxy
def test_openai_sdk_calls_a_tool_over_verified_tls(proxy, pki):
    response = _client(proxy, pki).chat.completions.create(
        model=standin.MODEL, tools=[WEATHER_TOOL],
        messages=[{"role": "user", "content": "What is the weather in Paris?"}])
    choice = response.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"location": "Paris"}


@needs_haproxy
def test_openai_sdk_gets_reasoning_over_verified_tls(proxy, pki):
    response = _client(proxy, pki).chat.completions.create(
        model=standin.MODEL, messages=[{"role": "user", "content": standin.TRAIN_QUESTION}],
        extra_body={"chat_template_kwargs": {"thinking": True}})
    message = response.choices[0].message
    reasoning = message.model_extra["reasoning"]  # vLLM 0.33's field, which the SDK keeps as an extra
    assert "300" in reasoning and "60 km/h" in message.content


@needs_haproxy
def test_openai_sdk_without_the_ca_refuses_the_certificate(proxy, pki):
    with pytest.raises(openai.APIConnectionError) as refused:
        _client(proxy, pki, verify_with_the_ca=False).models.list()
    causes, error = [], refused.value
    while error is not None:
        causes.append(str(error))
        error = error.__cause__ or error.__context__
    assert any("CERTIFICATE_VERIFY_FAILED" in cause for cause in causes), causes


@needs_haproxy
def test_plain_http_is_redirected_to_the_https_name_and_hsts_is_sent_over_tls(proxy, pki):
    redirect = requests.post(f"http://127.0.0.1:{proxy.port}/v1/chat/completions?trace=1", json={},
                             allow_redirects=False, timeout=5)
    assert redirect.status_code == 308
    assert redirect.headers["Location"] == f"https://localhost:{proxy.tls_port}/v1/chat/completions?trace=1"
    assert "Strict-Transport-Security" not in redirect.headers
    over_tls = requests.get(f"https://127.0.0.1:{proxy.tls_port}/health", verify=str(pki.ca_file), timeout=5)
    assert over_tls.status_code == 200 and over_tls.headers["Strict-Transport-Security"] == "max-age=600"
    # The path filter holds over TLS too.
    assert requests.post(f"https://127.0.0.1:{proxy.tls_port}/invocations", json={}, verify=str(pki.ca_file),
                         timeout=5).status_code == 404


def _handshake(port: int, pki, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([OPENSSL, "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost",
                           "-CAfile", str(pki.ca_file), "-verify_return_error", *args],
                          input="", capture_output=True, text=True, timeout=30)


@needs_haproxy
@pytest.mark.skipif(OPENSSL is None, reason="needs openssl")
@pytest.mark.parametrize(("args", "alert"), [
    # SECLEVEL=0 lets OpenSSL 3 offer TLS 1.0 and 1.1, so the refusal is HAProxy's.
    (["-tls1", "-cipher", "DEFAULT@SECLEVEL=0"], "alert protocol version"),
    (["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"], "alert protocol version"),
    # CBC ciphers the certificate's key could use, without AEAD.
    (["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA"], "alert handshake failure"),
    (["-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-SHA384"], "alert handshake failure"),
], ids=["tls1.0", "tls1.1", "cbc-sha1", "cbc-sha384"])
def test_old_protocols_and_weak_ciphers_are_refused(proxy, pki, args, alert):
    result = _handshake(proxy.tls_port, pki, *args)
    assert result.returncode != 0 and alert in result.stderr, result.stdout + result.stderr


@needs_haproxy
@pytest.mark.skipif(OPENSSL is None, reason="needs openssl")
@pytest.mark.parametrize(("args", "protocol"), [
    (["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"], "TLSv1.2"),
    (["-tls1_2", "-cipher", "ECDHE-ECDSA-CHACHA20-POLY1305"], "TLSv1.2"),
    (["-tls1_3"], "TLSv1.3"),
], ids=["tls1.2-gcm", "tls1.2-chacha20", "tls1.3"])
def test_tls_1_2_with_aead_and_tls_1_3_are_accepted_with_a_verified_chain(proxy, pki, args, protocol):
    result = _handshake(proxy.tls_port, pki, *args)
    assert result.returncode == 0, result.stderr
    assert f"New, {protocol}, Cipher is" in result.stdout and "Verify return code: 0 (ok)" in result.stdout


@needs_haproxy
@pytest.mark.parametrize(("mode", "policy"), [("close", "modern"), ("serve", "intermediate")])
def test_plain_http_closed_or_served_as_configured(role_renderer, pki, vllm, tmp_path, mode, policy):
    proxy = _start_proxy(role_renderer, tmp_path, pki, vllm, loadbalancer_http_mode=mode,
                         loadbalancer_tls_policy=policy)
    try:
        if mode == "close":
            with pytest.raises(requests.ConnectionError):
                requests.get(f"http://127.0.0.1:{proxy.port}/health", timeout=5)
        else:
            assert requests.get(f"http://127.0.0.1:{proxy.port}/health", timeout=5).status_code == 200
        assert requests.get(f"https://127.0.0.1:{proxy.tls_port}/health", verify=str(pki.ca_file),
                            timeout=5).status_code == 200
        if policy == "modern" and OPENSSL:
            refused = _handshake(proxy.tls_port, pki, "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256")
            assert refused.returncode != 0 and "alert protocol version" in refused.stderr, refused.stderr
    finally:
        proxy.stop()


# --- the role's tasks on this machine -----------------------------------------------------------------------

ANSIBLE_PLAYBOOK = pathlib.Path(sys.executable).with_name("ansible-playbook")


def _configure(tmp_path: pathlib.Path, variables: dict) -> subprocess.CompletedProcess:
    """The role's tasks/configure.yml run locally, every path in tmp_path; its handlers are replaced by ones that
    only say they ran (this machine's systemd and HAProxy are left alone)."""
    role = tmp_path / "roles" / "loadbalancer"
    if not role.exists():
        role.mkdir(parents=True)
        for part in ("defaults", "meta", "tasks", "templates", "vars"):
            (role / part).symlink_to(ROLE / part)
        (role / "handlers").mkdir()
        handlers = [{"name": task["name"], "ansible.builtin.debug": {"msg": f"handler ran: {task['name']}"}}
                    for task in yaml.safe_load((ROLE / "handlers" / "main.yml").read_text())]
        (role / "handlers" / "main.yml").write_text(yaml.safe_dump(handlers))
        (tmp_path / "ansible.cfg").write_text(f"[defaults]\nroles_path = {tmp_path / 'roles'}\n"
                                              f"filter_plugins = {REPO / 'plugins' / 'filter'}\n")
        (tmp_path / "configure.yml").write_text(yaml.safe_dump([{
            "hosts": "localhost", "connection": "local", "gather_facts": False,
            "tasks": [{"name": "Configure", "ansible.builtin.include_role": {"name": "loadbalancer",
                                                                               "tasks_from": "configure.yml"}}]}]))
        (tmp_path / "server-state").write_text("1\n")
    paths = {"_loadbalancer_config_path": str(tmp_path / "haproxy.cfg"),
             "_loadbalancer_server_state_file": str(tmp_path / "server-state"),
             "_loadbalancer_dropin_path": str(tmp_path / "haproxy.service.d" / "server-state.conf"),
             "_loadbalancer_save_state_script": str(tmp_path / "haproxy-save-server-state"),
             "_loadbalancer_tls_dir": str(tmp_path / "tls"), "loadbalancer_admin_socket": str(tmp_path / "admin.sock"),
             "loadbalancer_backend_servers": [{"name": "node01", "address": "127.0.0.1", "port": 8000}],
             "loadbalancer_listen_address": "127.0.0.1", "ansible_python_interpreter": sys.executable}
    # --diff -v: what an operator's run shows, where the key must not appear.
    return subprocess.run([str(ANSIBLE_PLAYBOOK), "-i", "localhost,", "configure.yml", "--diff", "-v", "-e",
                           json.dumps({**paths, **variables})], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "ANSIBLE_CONFIG": str(tmp_path / "ansible.cfg"),
                                            "ANSIBLE_NOCOLOR": "1"})


@pytest.mark.skipif(balancer.HAPROXY is None or not ANSIBLE_PLAYBOOK.exists() or os.geteuid() != 0,
                    reason="needs haproxy, ansible-playbook next to this Python, and root (the files are root's)")
def test_the_roles_tasks_keep_the_old_pair_until_haproxy_accepts_the_new_one(pki, tmp_path):
    tls_dir = tmp_path / "tls"
    first = _configure(tmp_path, _tls(pki))
    assert first.returncode == 0, first.stdout[-3000:]
    (served,) = tls_dir.iterdir()
    assert served.read_text() == pki.chain + pki.key_pem and (served.stat().st_mode & 0o777) == 0o600
    assert (tls_dir.stat().st_mode & 0o777) == 0o700
    assert f"ssl crt {served} " in (tmp_path / "haproxy.cfg").read_text()
    assert "handler ran: Reload haproxy" in first.stdout
    assert not [line for line in _key_lines(_tls(pki)) if line in first.stdout], "the run showed the key"

    # A key that is not the certificate's (the controller's check skipped): haproxy -c refuses the configuration
    # that names it, and the one on disk still names the old file, which is still there.
    renewed = _issued(pki.intermediate)
    refused = _configure(tmp_path, {**renewed, "loadbalancer_tls_private_key": key_pem(new_key())})
    assert refused.returncode != 0
    assert "inconsistencies between private key and certificate" in refused.stdout
    assert f"ssl crt {served} " in (tmp_path / "haproxy.cfg").read_text() and served.exists()

    second = _configure(tmp_path, renewed)
    assert second.returncode == 0, second.stdout[-3000:]
    (new,) = tls_dir.iterdir()
    assert new != served and new.read_text().endswith(renewed["loadbalancer_tls_private_key"])
    assert f"ssl crt {new} " in (tmp_path / "haproxy.cfg").read_text()

    plain = _configure(tmp_path, {})
    assert plain.returncode == 0, plain.stdout[-3000:]
    assert list(tls_dir.iterdir()) == [] and " ssl " not in (tmp_path / "haproxy.cfg").read_text()
