"""The blackbox_exporter role: its module reads the expiry of the certificate a TLS endpoint sends, run by the real
exporter against a TLS server on loopback (the metric the prometheus role's TlsCertificateExpiringSoon watches),
and fails the probe of an endpoint that does not speak TLS (TlsProbeFailing)."""

import pathlib
import shutil
import socket
import ssl
import subprocess
import threading
import time

import pytest
import requests
import yaml

REPO = pathlib.Path(__file__).resolve().parents[3]
EXPORTER = shutil.which("prometheus-blackbox-exporter")
needs_exporter = pytest.mark.skipif(
    EXPORTER is None or shutil.which("openssl") is None,
    reason="needs prometheus-blackbox-exporter (scripts/setup-dev-host.sh) and openssl")


def _renderer(role_renderer, **overrides):
    return role_renderer("blackbox_exporter", {}, overrides=overrides)


def test_one_module_reads_certificates_whoever_issued_them(role_renderer):
    config = yaml.safe_load(_renderer(role_renderer).template("blackbox.yml.j2"))
    assert config == {"modules": {"tls_certificate": {
        "prober": "tcp", "timeout": "5s",
        "tcp": {"preferred_ip_protocol": "ip4", "tls": True, "tls_config": {"insecure_skip_verify": True}}}}}


def test_the_module_is_the_one_prometheus_asks_for(role_renderer):
    prometheus = role_renderer("prometheus", {}, overrides={"groups": {}, "hostvars": {"node1": {}}})
    assert prometheus.var("_prometheus_tls_probe_module") in yaml.safe_load(
        _renderer(role_renderer).template("blackbox.yml.j2"))["modules"]


def test_it_listens_on_loopback(role_renderer):
    arguments = _renderer(role_renderer).template("prometheus-blackbox-exporter.default.j2").splitlines()
    assert 'ARGS="--config.file=/etc/prometheus/blackbox.yml --web.listen-address=127.0.0.1:9115"' in arguments


@pytest.mark.parametrize(("timeout", "passes"), [("5s", True), ("1500ms", True), ("5", False), ("five seconds", False)])
def test_the_timeout_is_checked(role_renderer, timeout, passes):
    task = yaml.safe_load((REPO / "roles/blackbox_exporter/tasks/validate.yml").read_text())[0]
    renderer = _renderer(role_renderer, blackbox_exporter_probe_timeout=timeout)
    assert renderer.render("{{ " + task["ansible.builtin.assert"]["that"] + " }}") is passes


def _check(config: str, tmp_path: pathlib.Path) -> subprocess.CompletedProcess:
    path = tmp_path / "blackbox.yml"
    path.write_text(config)
    return subprocess.run([EXPORTER, "--config.check", f"--config.file={path}"], capture_output=True, text=True,
                          timeout=60)


@needs_exporter
def test_the_exporter_accepts_the_configuration_and_refuses_a_bad_value(role_renderer, tmp_path):
    """What the role's `validate: prometheus-blackbox-exporter --config.check` decides."""
    accepted = _check(_renderer(role_renderer).template("blackbox.yml.j2"), tmp_path)
    assert accepted.returncode == 0, accepted.stderr
    refused = _check(_renderer(role_renderer, blackbox_exporter_probe_timeout="soon").template("blackbox.yml.j2"),
                     tmp_path)
    assert refused.returncode != 0
    assert "soon" in refused.stderr


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _serve_forever(listener: socket.socket, context: ssl.SSLContext | None):
    """Accepts connections and completes their TLS handshake (or none), then closes them."""
    while True:
        try:
            connection, _ = listener.accept()
        except OSError:
            return  # the test closed the listener
        try:
            if context:
                with context.wrap_socket(connection, server_side=True):
                    pass
            else:
                connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        except (OSError, ssl.SSLError):
            pass
        finally:
            connection.close()


@pytest.fixture
def endpoints(tmp_path):
    """A TLS server with a self-signed certificate valid for 10 days, and a plain TCP one: their addresses, the
    certificate's notAfter as a Unix time and the server names (SNI) the TLS server was asked for."""
    certificate, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "10", "-subj", "/CN=lb01",
                    "-keyout", str(key), "-out", str(certificate)], check=True, capture_output=True, timeout=60)
    end_date = subprocess.run(["openssl", "x509", "-noout", "-enddate", "-in", str(certificate)], check=True,
                              capture_output=True, text=True, timeout=60).stdout.strip().split("=", 1)[1]
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificate, key)
    server_names = []
    context.sni_callback = lambda _connection, name, _context: server_names.append(name)
    listeners = []
    addresses = []
    for tls_context in (context, None):
        listener = socket.create_server(("127.0.0.1", 0))
        listeners.append(listener)
        addresses.append(f"127.0.0.1:{listener.getsockname()[1]}")
        threading.Thread(target=_serve_forever, args=(listener, tls_context), daemon=True).start()
    yield {"tls": addresses[0], "plain": addresses[1], "not_after": ssl.cert_time_to_seconds(end_date),
           "server_names": server_names}
    for listener in listeners:
        listener.close()


@pytest.fixture
def exporter(role_renderer, tmp_path):
    """The real exporter with the role's configuration on a free loopback port; yields its address."""
    port = _free_port()
    config = tmp_path / "blackbox.yml"
    config.write_text(_renderer(role_renderer).template("blackbox.yml.j2"))
    with (tmp_path / "blackbox.log").open("w") as log:
        process = subprocess.Popen([EXPORTER, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}"],
                                   stdout=log, stderr=subprocess.STDOUT)
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while True:
        try:
            requests.get(f"http://{address}/", timeout=1)
            break
        except requests.ConnectionError:
            assert process.poll() is None, f"the exporter exited, see {tmp_path / 'blackbox.log'}"
            assert time.monotonic() < deadline, "the exporter did not answer within 10 s"
            time.sleep(0.05)
    yield address
    process.terminate()
    process.wait(timeout=10)


def _probe(exporter: str, target: str) -> dict[str, float]:
    """The probe's samples without labels: name -> value."""
    text = requests.get(f"http://{exporter}/probe", params={"module": "tls_certificate", "target": target},
                        timeout=10).text
    return {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
            if line and not line.startswith("#") and "{" not in line}


@needs_exporter
def test_the_probe_reports_when_the_endpoints_certificate_expires(exporter, endpoints):
    samples = _probe(exporter, endpoints["tls"])
    assert samples["probe_success"] == 1
    assert samples["probe_ssl_earliest_cert_expiry"] == endpoints["not_after"]
    assert 9 * 86400 < samples["probe_ssl_earliest_cert_expiry"] - time.time() <= 10 * 86400


@needs_exporter
def test_the_probe_asks_for_the_targets_host_name(exporter, endpoints):
    """SNI as clients send it: a balancer serving several certificates answers with the one for that name."""
    port = endpoints["tls"].rsplit(":", 1)[1]
    assert _probe(exporter, f"localhost:{port}")["probe_success"] == 1
    assert endpoints["server_names"] == ["localhost"]


@needs_exporter
def test_the_probe_of_an_endpoint_without_tls_fails(exporter, endpoints):
    samples = _probe(exporter, endpoints["plain"])
    assert samples["probe_success"] == 0
    assert "probe_ssl_earliest_cert_expiry" not in samples
