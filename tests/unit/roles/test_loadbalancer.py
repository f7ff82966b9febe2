"""The loadbalancer role's HAProxy configuration: its servers come from the inventory as documented, the role's
checks refuse what cannot work, HAProxy 2.6 accepts it (`haproxy -c`), and a real HAProxy running it balances,
health-checks, retries on another server, drains (community.general.haproxy as a rolling update calls it) and
keeps a drained server drained across a reload.

Run as a script, this file is the stand-in vLLM server of the live tests (`/health`, `/v1/whoami`, a slow stream under
/v1/, and any POST answered as inference).
"""

import argparse
import http.server
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import threading
import time

import pytest
import requests
import yaml

HAPROXY = shutil.which("haproxy") or ("/usr/sbin/haproxy" if pathlib.Path("/usr/sbin/haproxy").exists() else None)
needs_haproxy = pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed (apt-get install haproxy)")
DEBIAN_UNIT = pathlib.Path("/lib/systemd/system/haproxy.service")
FACTS = {"default_ipv4": {"address": "10.20.0.5"}}
GPU_NODES = {
    "groups": {"gpu_nodes": ["node01", "node02", "node03", "node04"]},
    "hostvars": {
        # Listen address set in the inventory.
        "node01": {"ansible_host": "10.20.0.11", "vllm_service_listen_address": "10.30.0.11"},
        # Facts gathered: vllm_service's default listen address.
        "node02": {"ansible_host": "10.20.0.12", "ansible_facts": {"default_ipv4": {"address": "10.30.0.12"}},
                   "vllm_service_port": 9000},
        # No facts: how Ansible reaches it.
        "node03": {"ansible_host": "10.20.0.13", "vllm_service_listen_address": "0.0.0.0"},
        # Nothing known but the name.
        "node04": {},
    },
}


def _renderer(role_renderer, **overrides):
    return role_renderer("loadbalancer", FACTS, overrides={**GPU_NODES, "inventory_hostname": "lb01", **overrides})


def _sections(config: str) -> dict[str, list[str]]:
    """Each section header ("global", "backend vllm", ...) with its lines, stripped, comments left out."""
    sections, current = {}, None
    for line in config.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line.startswith(" "):
            current = line.strip()
            sections[current] = []
        else:
            sections[current].append(line.strip())
    return sections


def test_servers_come_from_the_inventory(role_renderer):
    backend = _sections(_renderer(role_renderer).template("haproxy.cfg.j2"))["backend vllm"]
    assert [line for line in backend if line.startswith("server ")] == [
        "server node01 10.30.0.11:8000",
        "server node02 10.30.0.12:9000",
        "server node03 10.20.0.13:8000",
        "server node04 node04:8000",
    ]


def test_a_node_is_balanced_where_it_published_that_it_serves(role_renderer):
    """Its local fact vllm_service (docs/node-facts.md) wins over what the inventory says."""
    published = {"address": "10.40.0.12", "port": 8123, "url": "http://10.40.0.12:8123"}
    hostvars = {**GPU_NODES["hostvars"],
                "node02": {**GPU_NODES["hostvars"]["node02"], "ansible_local": {"vllm_service": published}}}
    backend = _sections(_renderer(role_renderer, hostvars=hostvars).template("haproxy.cfg.j2"))["backend vllm"]
    assert "server node02 10.40.0.12:8123" in backend


def test_explicit_servers_replace_the_group(role_renderer):
    servers = [{"name": "a", "address": "192.0.2.1", "port": 8000}, {"name": "b", "address": "192.0.2.2",
                                                                       "port": 8001}]
    backend = _sections(_renderer(role_renderer, loadbalancer_backend_servers=servers,
                                  loadbalancer_backend_name="deepseek").template("haproxy.cfg.j2"))["backend deepseek"]
    assert [line for line in backend if line.startswith("server ")] == [
        "server a 192.0.2.1:8000", "server b 192.0.2.2:8001"]


def _validation_passes(renderer, tasks_file: str) -> list[bool]:
    """Each assert of one of the role's tasks files, evaluated with its task vars (True when its `when` skips it)."""
    tasks = yaml.safe_load((renderer.role_dir / "tasks" / tasks_file).read_text())
    return [("when" in task and not renderer.render("{{ " + task["when"] + " }}"))
            or renderer.render("{{ " + task["ansible.builtin.assert"]["that"] + " }}", task.get("vars"))
            for task in tasks if "ansible.builtin.assert" in task]


# validate.yml: servers, unique names, TLS settings, TLS certificate (skipped without TLS; see
# test_loadbalancer_tls.py); preflight.yml, which needs the balancer's facts: not balancing onto itself.
@pytest.mark.parametrize(("overrides", "tasks_file", "expected"), [
    ({}, "validate.yml", [True, True, True, True]),
    ({}, "preflight.yml", [True]),
    ({"groups": {"gpu_nodes": []}}, "validate.yml", [False, True, True, True]),
    ({"loadbalancer_backend_servers": [{"name": "a", "address": "192.0.2.1", "port": 8000},
                                       {"name": "a", "address": "192.0.2.2", "port": 8000}]},
     "validate.yml", [True, False, True, True]),
    ({"loadbalancer_listen_address": "10.30.0.12", "loadbalancer_port": 9000}, "preflight.yml", [False]),
], ids=["valid", "valid-preflight", "no-servers", "duplicate-names", "balances-onto-itself"])
def test_validation(role_renderer, overrides, tasks_file, expected):
    assert _validation_passes(_renderer(role_renderer, **overrides), tasks_file) == expected


def test_default_configuration(role_renderer):
    sections = _sections(_renderer(role_renderer).template("haproxy.cfg.j2"))
    assert "stats socket /run/haproxy/admin.sock mode 660 level admin" in sections["global"]
    assert "server-state-file /var/lib/haproxy/server-state" in sections["global"]
    assert {"mode http", "timeout connect 5s", "timeout client 1h", "timeout server 1h",
            "timeout http-keep-alive 60s", "load-server-state-from-file global"} <= set(sections["defaults"])
    assert not any("http-server-close" in line or "compression" in line or "http-buffer-request" in line
                   for lines in sections.values() for line in lines)
    assert sections["frontend vllm_api"] == ["bind 10.20.0.5:8000", "acl client_path path /health",
                                             "acl client_path path_beg /v1/",
                                             "http-request deny deny_status 404 unless client_path",
                                             "default_backend vllm"]
    backend = sections["backend vllm"]
    assert backend[:9] == [
        "balance leastconn",
        "option httpchk",
        "http-check send meth GET uri /health ver HTTP/1.1 hdr Host vllm",
        "http-check expect status 200",
        "retries 3",
        "option redispatch 1",
        "retry-on conn-failure empty-response response-timeout",
        "default-server check inter 2s fall 3 rise 2",
        "server node01 10.30.0.11:8000",
    ]
    assert sections["frontend stats"] == [
        "bind 127.0.0.1:8404", "http-request set-log-level silent",
        "http-request use-service prometheus-exporter if { path /metrics }",
        "stats enable", "stats uri /", "stats refresh 10s"]


def test_stats_can_be_turned_off(role_renderer):
    sections = _sections(_renderer(role_renderer, loadbalancer_stats_enabled=False).template("haproxy.cfg.j2"))
    assert "frontend stats" not in sections
    assert "stats socket /run/haproxy/admin.sock mode 660 level admin" in sections["global"]


def test_dropin_saves_the_server_state_between_the_check_and_the_reload(role_renderer):
    dropin = _renderer(role_renderer).template("server-state.conf.j2")
    assert [line for line in dropin.splitlines() if line.startswith("ExecReload=")] == [
        "ExecReload=",
        "ExecReload=/usr/sbin/haproxy -Ws -f $CONFIG -c -q $EXTRAOPTS",
        "ExecReload=-/bin/sh /usr/local/sbin/haproxy-save-server-state $CONFIG",
        "ExecReload=/bin/kill -USR2 $MAINPID",
    ]
    script = _renderer(role_renderer, loadbalancer_admin_socket="/run/haproxy/lb.sock").template(
        "haproxy-save-server-state.j2")
    assert ('echo "show servers state" | socat -t 10 stdio unix-connect:/run/haproxy/lb.sock > "$state.dump"'
            in script.splitlines())
    assert "state=/var/lib/haproxy/server-state" in script.splitlines()


def test_save_state_script_is_valid_sh(role_renderer, tmp_path):
    """What the role's `validate: sh -n %s` runs."""
    script = tmp_path / "haproxy-save-server-state"
    script.write_text(_renderer(role_renderer).template("haproxy-save-server-state.j2"))
    result = subprocess.run(["/bin/sh", "-n", str(script)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(not DEBIAN_UNIT.exists() or shutil.which("systemd-analyze") is None,
                    reason="needs Debian's haproxy.service and systemd-analyze")
def test_dropin_is_a_valid_addition_to_debians_unit(role_renderer, tmp_path):
    shutil.copy(DEBIAN_UNIT, tmp_path / "haproxy.service")
    (tmp_path / "haproxy.service.d").mkdir()
    (tmp_path / "haproxy.service.d" / "server-state.conf").write_text(
        _renderer(role_renderer).template("server-state.conf.j2"))
    result = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "haproxy.service")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "server-state.conf" not in result.stderr, result.stderr


def _check(config: str, tmp_path: pathlib.Path) -> subprocess.CompletedProcess:
    path = tmp_path / "haproxy.cfg"
    path.write_text(config)
    return subprocess.run([HAPROXY, "-c", "-f", str(path)], capture_output=True, text=True, timeout=30)


@needs_haproxy
@pytest.mark.parametrize("overrides", [
    {},
    {"loadbalancer_stats_enabled": False},
    {"loadbalancer_backend_servers": [{"name": "a", "address": "192.0.2.1", "port": 8000}],
     "loadbalancer_listen_address": "0.0.0.0", "loadbalancer_retry_on": ["conn-failure"],
     "loadbalancer_timeout_server": "90m", "loadbalancer_check_interval": "500ms"},
], ids=["defaults", "no-stats", "overrides"])
def test_haproxy_accepts_the_configuration(role_renderer, tmp_path, overrides):
    state_file = tmp_path / "server-state"
    state_file.write_text("1\n")  # what the role puts there before the first reload
    # HAProxy refuses a server name it cannot resolve: leave out node04, known by its name only.
    resolvable = {"gpu_nodes": GPU_NODES["groups"]["gpu_nodes"][:3]}
    config = _renderer(role_renderer, groups=resolvable, _loadbalancer_server_state_file=str(state_file),
                       **overrides).template("haproxy.cfg.j2")
    result = _check(config, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING" not in result.stderr and "ALERT" not in result.stderr, result.stderr


@needs_haproxy
def test_haproxy_refuses_a_bad_value(role_renderer, tmp_path):
    """The role's `validate: haproxy -c` stops a wrong setting before it replaces a working configuration."""
    config = _renderer(role_renderer, loadbalancer_timeout_server="one hour").template("haproxy.cfg.j2")
    result = _check(config, tmp_path)
    assert result.returncode != 0
    assert "timeout" in result.stderr


# --- a real HAProxy with the rendered configuration ---------------------------------------------------------

# Lines of `global` that need root or the Debian package's user; the test's HAProxy runs as whoever runs pytest.
ROOT_ONLY = ("chroot ", "user ", "group ", "daemon")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Backend:
    """A stand-in vLLM server (this file run as a script) on a free loopback port; HAProxy knows it as `name`, it
    answers /v1/whoami with `answer` (the name by default)."""

    def __init__(self, name: str, tmp_path: pathlib.Path, health_status: int = 200, answer: str = ""):
        # Imported here: run as a script (the stand-in), this file imports no package of the repository.
        from lab.standin_process import StandinProcess

        self.name = name
        answer = answer or name
        self.process = StandinProcess(pathlib.Path(__file__), ["--name", answer, "--health-status",
                                                               str(health_status)], tmp_path / f"{answer}.log")
        self.port = int(self.process.url.rsplit(":", 1)[1])

    def stop(self):
        self.process.stop()


def _live_config(role_renderer, tmp_path: pathlib.Path, backends: list[Backend], port: int, stats_port: int,
                 **overrides) -> str:
    """The role's configuration for HAProxy on loopback, with its admin socket and state file in tmp_path."""
    config = _renderer(
        role_renderer,
        loadbalancer_backend_servers=[{"name": b.name, "address": "127.0.0.1", "port": b.port} for b in backends],
        loadbalancer_listen_address="127.0.0.1", loadbalancer_port=port, loadbalancer_stats_port=stats_port,
        loadbalancer_admin_socket=str(tmp_path / "admin.sock"),
        _loadbalancer_server_state_file=str(tmp_path / "server-state"), **overrides,
    ).template("haproxy.cfg.j2")
    return "\n".join(line for line in config.splitlines() if not line.strip().startswith(ROOT_ONLY)) + "\n"


class HAProxy:
    """HAProxy in the foreground with the role's configuration, its admin socket and state file in tmp_path."""

    def __init__(self, role_renderer, tmp_path: pathlib.Path, backends: list[Backend], **overrides):
        self.admin_socket = tmp_path / "admin.sock"
        self.state_file = tmp_path / "server-state"
        if not self.state_file.exists():
            self.state_file.write_text("1\n")
        self.port, self.stats_port = _free_port(), _free_port()
        self.config = tmp_path / "haproxy.cfg"
        self.config.write_text(_live_config(role_renderer, tmp_path, backends, self.port, self.stats_port,
                                            **overrides))
        self.log = (tmp_path / "haproxy.log").open("a")
        self.process = subprocess.Popen([HAPROXY, "-db", "-f", str(self.config)], stdout=self.log,
                                        stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while not self._answers():
            assert self.process.poll() is None, f"haproxy exited, see {tmp_path / 'haproxy.log'}"
            assert time.monotonic() < deadline, "haproxy did not open its admin socket within 10 s"
            time.sleep(0.05)

    def _answers(self) -> bool:
        try:
            self.command("show info")
            return True
        except OSError:
            return False

    def command(self, line: str) -> str:
        """One command on the runtime API, as community.general.haproxy sends it."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(5)
            client.connect(str(self.admin_socket))
            client.sendall(line.encode() + b"\n")
            answer = b""
            while chunk := client.recv(65536):
                answer += chunk
        return answer.decode()

    def servers(self) -> dict[str, dict]:
        """`show stat` of the backend's servers: status and scur (current sessions), as the module reads them."""
        rows = self.command("show stat").lstrip("# ").splitlines()
        header = rows[0].split(",")
        stats = [dict(zip(header, row.split(","))) for row in rows[1:] if row]
        return {row["svname"]: row for row in stats if row["pxname"] == "vllm" and row["svname"] != "BACKEND"}

    def wait_for_status(self, server: str, status: str, timeout: float = 10):
        deadline = time.monotonic() + timeout
        while self.servers()[server]["status"] != status:
            assert time.monotonic() < deadline, f"{server} is {self.servers()[server]['status']}, not {status}"
            time.sleep(0.05)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.log.close()


@needs_haproxy
def test_health_checks_take_out_a_server_whose_engine_is_dead(role_renderer, tmp_path, started):
    healthy = started(Backend, "node01", tmp_path)
    dead_engine = started(Backend, "node02", tmp_path, health_status=503)  # vLLM's /health when the engine died
    proxy = started(HAProxy, role_renderer, tmp_path, [healthy, dead_engine],
                    loadbalancer_check_interval="100ms", loadbalancer_check_fall=1, loadbalancer_check_rise=1)
    proxy.wait_for_status("node02", "DOWN")
    assert proxy.servers()["node01"]["status"] == "UP"
    assert {requests.get(proxy.url("/v1/whoami"), timeout=5).text for _ in range(6)} == {"node01"}
    metrics = requests.get(f"http://127.0.0.1:{proxy.stats_port}/metrics", timeout=5).text
    assert 'haproxy_server_status{proxy="vllm",server="node02",state="DOWN"} 1' in metrics
    assert requests.get(f"http://127.0.0.1:{proxy.stats_port}/", timeout=5).status_code == 200


@needs_haproxy
def test_a_backend_whose_servers_are_all_drained_has_no_active_server(role_renderer, tmp_path, started):
    """What the prometheus role's HaproxyNoHealthyBackend reads: HAProxy 2.6 counts drained servers out."""
    first = started(Backend, "node01", tmp_path)
    second = started(Backend, "node02", tmp_path)
    proxy = started(HAProxy, role_renderer, tmp_path, [first, second], loadbalancer_check_interval="100ms",
                    loadbalancer_check_rise=1)
    proxy.wait_for_status("node01", "UP")
    proxy.wait_for_status("node02", "UP")

    def active_servers() -> str:
        metrics = requests.get(f"http://127.0.0.1:{proxy.stats_port}/metrics", timeout=5).text
        return next(line.split()[1] for line in metrics.splitlines()
                    if line.startswith('haproxy_backend_active_servers{proxy="vllm"}'))

    assert active_servers() == "2"
    proxy.command("set server vllm/node01 state drain")
    assert active_servers() == "1"
    proxy.command("set server vllm/node02 state drain")
    assert active_servers() == "0"


@needs_haproxy
@pytest.mark.parametrize("path", ["/invocations", "/tokenize", "/detokenize", "/generative_scoring",
                                  "/scale_elastic_ep", "/metrics", "/ping", "/v1", "/v2/x", "/inference/v1/generate"])
def test_only_the_clients_paths_reach_vllm(role_renderer, tmp_path, started, path):
    backend = started(Backend, "node01", tmp_path)
    proxy = started(HAProxy, role_renderer, tmp_path, [backend], loadbalancer_check_interval="100ms",
                    loadbalancer_check_rise=1)
    proxy.wait_for_status("node01", "UP")
    refused = requests.post(proxy.url(path), json={"messages": [{"role": "user", "content": "hi"}]}, timeout=5)
    assert refused.status_code == 404 and "X-Server" not in refused.headers
    assert requests.post(proxy.url("/v1/chat/completions"), json={}, timeout=5).headers["X-Server"] == "node01"
    assert requests.get(proxy.url("/health"), timeout=5).status_code == 200


@needs_haproxy
def test_a_request_to_a_dead_server_is_retried_on_another(role_renderer, tmp_path, started):
    first = started(Backend, "node01", tmp_path)
    second = started(Backend, "node02", tmp_path)
    # Checks far apart: HAProxy still believes node02 is up when it has gone, so only the retry can save requests.
    proxy = started(HAProxy, role_renderer, tmp_path, [first, second], loadbalancer_check_interval="60s")
    assert {requests.get(proxy.url("/v1/whoami"), timeout=5).text for _ in range(4)} == {"node01", "node02"}
    second.stop()
    answers = [requests.get(proxy.url("/v1/whoami"), timeout=10) for _ in range(6)]
    assert [(answer.status_code, answer.text) for answer in answers] == [(200, "node01")] * 6
    # The health check has not taken it out yet ("UP" or "UP 1/3" on the way down).
    assert proxy.servers()["node02"]["status"].startswith("UP")


@needs_haproxy
def test_a_drained_server_finishes_its_stream_gets_nothing_new_and_stays_drained(role_renderer, tmp_path,
                                                                               started):
    first = started(Backend, "node01", tmp_path)
    second = started(Backend, "node02", tmp_path)
    proxy = started(HAProxy, role_renderer, tmp_path, [first, second], loadbalancer_check_interval="60s")
    stream = requests.get(proxy.url("/v1/stream?chunks=20"), stream=True, timeout=10)
    streaming_server = stream.headers["X-Server"]
    other = "node02" if streaming_server == "node01" else "node01"
    chunks = stream.iter_lines()
    assert next(chunks) == b"token 0"

    proxy.command(f"set server vllm/{streaming_server} state drain")
    assert proxy.servers()[streaming_server]["status"] == "DRAIN"
    assert proxy.servers()[streaming_server]["scur"] == "1"  # what `drain: true` + `wait: true` waits on
    assert {requests.get(proxy.url("/v1/whoami"), timeout=5).text for _ in range(4)} == {other}
    assert list(chunks) == [f"token {index}".encode() for index in range(1, 20)]
    deadline = time.monotonic() + 5
    while proxy.servers()[streaming_server]["scur"] != "0":
        assert time.monotonic() < deadline, "the finished stream still counts as a session"
        time.sleep(0.05)

    # What the unit's drop-in does before a reload; the next HAProxy reads it back.
    proxy.state_file.write_text(proxy.command("show servers state"))
    proxy.stop()
    restarted = started(HAProxy, role_renderer, tmp_path, [first, second], loadbalancer_check_interval="60s")
    assert restarted.servers()[streaming_server]["status"] == "DRAIN"
    assert {requests.get(restarted.url("/v1/whoami"), timeout=5).text for _ in range(4)} == {other}
    restarted.command(f"set server vllm/{streaming_server} state ready")
    assert {requests.get(restarted.url("/v1/whoami"), timeout=5).text for _ in range(4)} == {"node01", "node02"}


ANSIBLE_PLAYBOOK = pathlib.Path(sys.executable).with_name("ansible-playbook")


@pytest.mark.skipif(HAPROXY is None or not ANSIBLE_PLAYBOOK.exists(),
                    reason="needs haproxy and ansible-playbook next to this Python")
def test_the_modules_drain_waits_until_the_running_stream_ends(role_renderer, tmp_path, started):
    """community.general.haproxy as a rolling update calls it, against the role's configuration."""
    first = started(Backend, "node01", tmp_path)
    second = started(Backend, "node02", tmp_path)
    proxy = started(HAProxy, role_renderer, tmp_path, [first, second], loadbalancer_check_interval="60s")
    # About 8 s: longer than ansible-playbook takes to start, so that the module finds the stream running.
    stream = requests.get(proxy.url("/v1/stream?chunks=160"), stream=True, timeout=10)
    draining = stream.headers["X-Server"]
    received, finished = [], {}

    def read_to_the_end():
        received.extend(stream.iter_lines())
        finished["at"] = time.monotonic()

    reader = threading.Thread(target=read_to_the_end, daemon=True)
    reader.start()

    playbook = tmp_path / "drain.yml"
    playbook.write_text(yaml.safe_dump([{
        "hosts": "localhost", "connection": "local", "gather_facts": False,
        "tasks": [{"name": "Drain", "community.general.haproxy": {
            "state": "disabled", "drain": True, "wait": True, "host": draining, "backend": "vllm",
            "socket": str(proxy.admin_socket), "wait_interval": 1, "wait_retries": 30}}],
    }]))
    (tmp_path / "ansible.cfg").write_text("[defaults]\n")
    with subprocess.Popen(
            [str(ANSIBLE_PLAYBOOK), "-i", "localhost,", str(playbook),
             "-e", f"ansible_python_interpreter={sys.executable}"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
            env={**os.environ, "ANSIBLE_CONFIG": str(tmp_path / "ansible.cfg")}) as play:
        deadline = time.monotonic() + 30
        while proxy.servers()[draining]["status"] == "UP" and play.poll() is None:
            assert time.monotonic() < deadline, "the module did not drain the server within 30 s"
            time.sleep(0.05)
        assert "at" not in finished, "the stream ended before the module drained the server: make it longer"
        output, _ = play.communicate(timeout=120)
    returned_at = time.monotonic()
    reader.join(timeout=10)
    assert play.returncode == 0, output
    assert finished["at"] <= returned_at, "the module returned while the stream was still running"
    assert received == [f"token {index}".encode() for index in range(160)]
    assert proxy.servers()[draining]["status"] == "MAINT"
    assert proxy.servers()[draining]["scur"] == "0"


@pytest.mark.skipif(HAPROXY is None or shutil.which("socat") is None,
                    reason="needs haproxy and socat (apt-get install socat) to run the role's save-state script")
def test_a_reload_keeps_drained_servers_drained_and_takes_moved_servers_from_the_new_config(
        role_renderer, tmp_path, started):
    first = started(Backend, "node01", tmp_path)
    second = started(Backend, "node02", tmp_path)
    proxy = started(HAProxy, role_renderer, tmp_path, [first, second], loadbalancer_check_interval="60s")
    proxy.command("set server vllm/node01 state drain")

    # node02 moves to another port; the script runs between the new configuration's check and the reload.
    moved = started(Backend, "node02", tmp_path, answer="node02-moved")
    new_config = tmp_path / "new.cfg"
    new_config.write_text(_live_config(role_renderer, tmp_path, [first, moved], _free_port(), _free_port(),
                                       loadbalancer_check_interval="60s"))
    script = tmp_path / "haproxy-save-server-state"
    script.write_text(_renderer(role_renderer, loadbalancer_admin_socket=str(proxy.admin_socket),
                                _loadbalancer_server_state_file=str(proxy.state_file)).template(
        "haproxy-save-server-state.j2"))
    subprocess.run(["/bin/sh", str(script), str(new_config)], check=True, timeout=30)
    saved = [line.split()[3] for line in proxy.state_file.read_text().splitlines()
             if line and not line.startswith("#") and len(line.split()) > 3]
    assert saved == ["node01"]  # node02's line would bring back its old port

    proxy.stop()
    restarted = started(HAProxy, role_renderer, tmp_path, [first, moved], loadbalancer_check_interval="60s")
    assert restarted.servers()["node01"]["status"] == "DRAIN"
    assert {requests.get(restarted.url("/v1/whoami"), timeout=5).text for _ in range(4)} == {"node02-moved"}


# --- the stand-in vLLM server -------------------------------------------------------------------------------

def _serve(host: str, port: int, name: str, health_status: int) -> None:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _answer(self, status: int, body: bytes, content_type: str = "text/plain"):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Server", name)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if self.path == "/health":
                self._answer(health_status, b"")
            elif self.path == "/v1/whoami":
                self._answer(200, name.encode())
            elif self.path.startswith("/v1/stream?chunks="):
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.send_header("X-Server", name)
                self.end_headers()
                for index in range(int(self.path.split("=")[1])):
                    line = f"token {index}\n".encode()
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                    self.wfile.flush()
                    time.sleep(0.05)
                self.wfile.write(b"0\r\n\r\n")
            else:
                self._answer(404, json.dumps({"detail": "Not Found"}).encode(), "application/json")

        def do_POST(self):
            # vLLM runs /invocations (and more) without checking the API key.
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self._answer(200, json.dumps({"object": "chat.completion", "path": self.path}).encode(),
                         "application/json")

    server = http.server.ThreadingHTTPServer((host, port), Handler)
    print(f"READY http://{host}:{server.server_port}", flush=True)
    server.serve_forever()  # until the test's SIGTERM


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--name", required=True)
    parser.add_argument("--health-status", type=int, default=200)
    arguments = parser.parse_args()
    _serve(arguments.host, arguments.port, arguments.name, arguments.health_status)
