"""TLS at the loadbalancer role's HAProxy: the role's checks refuse a bad certificate, key or setting before any
change, with a message naming the variable and the fix.

The certificates are made here with `cryptography` (tests/helpers/tls_certificates.py): a root CA, an intermediate,
and a server certificate for localhost and 127.0.0.1.
"""

import importlib.util
import pathlib
import types

import pytest
import yaml
from cryptography.x509.oid import ExtendedKeyUsageOID
from tls_certificates import CertificateAuthority, certificate_pem, key_pem, new_key, write

REPO = pathlib.Path(__file__).resolve().parents[3]
ROLE = REPO / "roles" / "loadbalancer"


def _load_file(name: str, path: pathlib.Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The configuration helpers of the role's other tests.
balancer = _load_file("loadbalancer_tests", REPO / "tests" / "unit" / "roles" / "test_loadbalancer.py")


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

