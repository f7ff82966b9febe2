"""scripts/check_secrets.py: each rule finds its secret, the look-alikes pass, and the output never shows a secret.

The fake secrets are assembled at run time so that this file holds none itself (the scan covers it too).
"""

import os
import pathlib
import subprocess
import sys

import pytest

from scripts import check_secrets

REPO = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "check_secrets.py"
TIMEOUT = 30

HF_TOKEN = "hf" + "_" + "Q7b2Kx9Lm4Np8Rs1" + "Tv6Wy3Zc5Df0Gh2Jk"
AWS_KEY = "AKIA" + "Z7Q2M4X9" + "B3N5V1C8"
API_KEY = "Zt8" + "qLw3Nv6Pb1Rx4Ks9"
PASSWORD = "vY4#" + "pR8!mQ2z"
BEGIN, END = "-----BEGIN ", "-----END "
PRIVATE_KEY_BODY = "MIIEowIBAAKCAQEA" + "s7Hq9Lk2Vx5Pw8Rt"
VAULT_ENCRYPTED = "$ANSIBLE_VAULT;1.1;AES256\n" + "6132" * 16 + "\n"
ALLOW = "# secret-scan: " + "allow"


def private_key(kind):
    label = f"{kind} PRIVATE KEY" if kind else "PRIVATE KEY"
    return f"{BEGIN}{label}-----\n{PRIVATE_KEY_BODY}\n{END}{label}-----\n"


# (id, file name, content, expected [(line, rule)] of blocking findings)
TRIGGERS = [
    ("hf-token-in-python", "tools/probe.py", f'TOKEN = "{HF_TOKEN}"\n', [(1, "hf-token")]),
    ("hf-token-in-markdown", "docs/run.md", f"Run with\n\n    HF_TOKEN={HF_TOKEN} make\n", [(3, "hf-token")]),
    ("aws-key", "notes.txt", f"key id {AWS_KEY} in prod\n", [(1, "aws-access-key")]),
    ("rsa-key", "files/id_rsa", private_key("RSA"), [(1, "private-key")]),
    ("openssh-key", "files/id_ed25519", private_key("OPENSSH"), [(1, "private-key")]),
    ("pkcs8-key", "certs/server.pem", "x\n" + private_key(""), [(2, "private-key")]),
    ("encrypted-pkcs8-key", "certs/server.key", private_key("ENCRYPTED"), [(1, "private-key")]),
    ("yaml-plain", "group_vars/all.yml", f"---\nvllm_service_api_key: {API_KEY}\n", [(2, "secret-assignment")]),
    ("yaml-quoted", "host_vars/a.yaml", f"db:\n  password: '{PASSWORD}'  # set by ops\n", [(2, "secret-assignment")]),
    ("yaml-list-item", "vars.yml", f"users:\n  - secret: \"{API_KEY}\"\n", [(2, "secret-assignment")]),
    ("yaml-block-scalar", "vars.yml", f"client_secret: >-\n  {API_KEY}\nnext: 1\n", [(2, "secret-assignment")]),
    ("yaml-hf-token-both-rules", "vars.yml", f"model_weights_hf_token: {HF_TOKEN}\n",
     [(1, "hf-token"), (1, "secret-assignment")]),
    ("json", "config.json", f'{{"name": "n", "api_key": "{API_KEY}"}}\n', [(1, "secret-assignment")]),
    ("ini", "app.ini", f"[auth]\npassword = {PASSWORD}\n", [(2, "secret-assignment")]),
    ("env-export", "deploy/.env", f"export VLLM_API_KEY={API_KEY}\n", [(1, "secret-assignment")]),
    ("env-template-literal", "templates/vllm.env.j2", f"HF_HUB_OFFLINE=1\nAPI_TOKEN={API_KEY}\n",
     [(2, "secret-assignment")]),
    ("inventory-line", "inventories/lab/hosts", f"node1 ansible_host=10.0.0.5 ansible_password={PASSWORD}\n",
     [(1, "secret-assignment")]),
    ("vault-unencrypted", "group_vars/all/vault.yml", "vault_token: '{{ x }}'\n", [(1, "unencrypted-vault")]),
    ("vault-in-name", "group_vars/prod_vault_keys.yaml", "a: 1\n", [(1, "unencrypted-vault")]),
]

LOOK_ALIKES = [
    ("jinja", "vars.yml", 'vllm_service_api_key: "{{ vault_vllm_api_key }}"\n'),
    ("lookup-block", "vars.yml", "api_key: >-\n  {{ lookup('ansible.builtin.password', '/tmp/k length=40') }}\n"),
    ("jinja-in-env-template", "vllm.env.j2", "HF_TOKEN={{ model_weights_hf_token }}\n"),
    ("empty", "defaults.yml", 'model_weights_hf_token: ""\nsecret:\n'),
    ("null-and-bool", "defaults.yml", "token: null\npassword: false\n"),
    ("changeme", "vars.yml", "password: changeme\nvault_vllm_api_key: change-me-to-a-long-random-string\n"),
    ("angle-brackets", "vars.yml", 'hf_token: "<your Hugging Face token>"\n'),
    ("example", "app.ini", "api_key = my-example-key-1234\n"),
    ("hf-placeholder", "README.md", "hf_" + "x" * 34 + "\n"),
    ("aws-documentation-key", "docs/aws.md", "AKIA" + "IOSFODNN7" + "EXAMPLE\n"),
    ("inline-vault", "vars.yml", "api_key: !vault |\n  $ANSIBLE_VAULT;1.1;AES256\n  3234\n"),
    ("env-reference", "deploy/.env", "HF_TOKEN=${HF_TOKEN}\n"),
    ("file-path", "vars.yml", "token: /run/secrets/hf_token\n"),
    ("plain-words", "vars.yml", "password: correcthorsebattery\nsecret: hunter2\n"),
    ("not-a-secret-key", "vars.yml", f"max_tokens: {API_KEY}\ntoken_url: https://example.org/{API_KEY}\n"),
    ("python-assignment", "tool.py", f'api_key = "{API_KEY}"\n'),
    ("encrypted-vault", "group_vars/all/vault.yml", VAULT_ENCRYPTED),
    ("vault-example", "group_vars/all/vault.yml.example", "vault_hf_token: ''\n"),
    ("vault-template", "templates/vault.yml.j2", "a: 1\n"),
    ("short-hf-lookalike", "plugins/x.py", "hf_model_snapshot hf_" + "abc123\n"),
]


def blocking(findings):
    return [(finding.line, finding.rule) for finding in findings if not finding.allowed_because]


@pytest.mark.parametrize("name, content, expected", [case[1:] for case in TRIGGERS], ids=[c[0] for c in TRIGGERS])
def test_each_rule_finds_its_secret(name, content, expected):
    assert sorted(blocking(check_secrets.scan_text(name, content))) == sorted(expected)


@pytest.mark.parametrize("name, content", [case[1:] for case in LOOK_ALIKES], ids=[c[0] for c in LOOK_ALIKES])
def test_look_alikes_pass(name, content):
    assert check_secrets.scan_text(name, content) == []


@pytest.mark.parametrize("line, reason", [
    (f'TOKEN = "{HF_TOKEN}"  {ALLOW} fixture of the hub stand-in', "fixture of the hub stand-in"),
    (f"lab_token: {HF_TOKEN}  {ALLOW} lab token", "lab token"),
    (f"{HF_TOKEN} <!-- secret-scan: allow documented sample -->", "documented sample"),
    (f"{HF_TOKEN} {ALLOW} copied from {AWS_KEY}", "copied from AKIA***(20 chars)"),
])
def test_an_allow_comment_with_a_reason_allows_its_line(line, reason):
    findings = check_secrets.scan_text("tests/fixture.yml", line + "\n")
    assert findings and {finding.allowed_because for finding in findings} == {reason}


def test_an_allow_comment_covers_its_line_only_and_needs_a_reason():
    content = f"a: {HF_TOKEN}  {ALLOW} fixture\nb: {HF_TOKEN}\nc: {HF_TOKEN}  {ALLOW}\n"
    assert sorted(set(blocking(check_secrets.scan_text("tests/t.txt", content)))) == [(2, "hf-token"),
                                                                                       (3, "hf-token")]


def test_an_allow_comment_on_the_key_covers_its_block_scalar():
    content = f"client_secret: >-  {ALLOW} fixture\n  {API_KEY}\n"
    assert blocking(check_secrets.scan_text("tests/vars.yml", content)) == []


@pytest.mark.parametrize("secret", [HF_TOKEN, AWS_KEY, API_KEY, PASSWORD])
def test_mask_never_shows_more_than_four_characters(secret):
    masked = check_secrets.mask(secret)
    assert secret not in masked and f"({len(secret)} chars)" in masked
    assert len(masked.split("***")[0]) <= 4


def run_script(*args, cwd=REPO, env=None):
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=TIMEOUT, env=env)


def write(root: pathlib.Path, name, content):
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    return path


def test_findings_exit_1_one_line_each_and_never_print_the_secret(tmp_path):
    files = [write(tmp_path, "vars.yml", f"api_key: {API_KEY}\nhf_token: {HF_TOKEN}\n"),
             write(tmp_path, "aws.txt", f"{AWS_KEY}\n"),
             write(tmp_path, "id_rsa", private_key("RSA")),
             write(tmp_path, "vault.yml", f"vault_password: {PASSWORD}\n")]
    result = run_script(*map(str, files))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert {line.split(": ")[1] for line in lines} == {"secret-assignment", "hf-token", "aws-access-key",
                                                      "private-key", "unencrypted-vault"}
    assert f"{tmp_path}/vars.yml:1: secret-assignment: api_key = " in result.stdout
    output = result.stdout + result.stderr
    for secret in (API_KEY, HF_TOKEN, AWS_KEY, PASSWORD, PRIVATE_KEY_BODY):
        windows = {secret[start:start + 8] for start in range(len(secret) - 7)}
        assert not any(window in output for window in windows), secret[:4]
    assert "5 finding(s)" not in result.stderr and "finding(s)" in result.stderr


def test_clean_files_exit_0_silently(tmp_path):
    clean = write(tmp_path, "vars.yml", 'api_key: "{{ vault_api_key }}"\n')
    result = run_script(str(clean))
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_verbose_lists_allowed_findings(tmp_path):
    fixture = write(tmp_path, "tests/hub.yml", f"token: {HF_TOKEN}  {ALLOW} hub stand-in token\n")
    quiet, verbose = run_script(str(fixture)), run_script("--verbose", str(fixture))
    assert (quiet.returncode, quiet.stdout) == (0, "")
    assert verbose.returncode == 0 and "(allowed: hub stand-in token)" in verbose.stdout
    assert HF_TOKEN not in verbose.stdout


def test_binary_files_and_symlinks_are_skipped(tmp_path):
    binary = tmp_path / "blob.bin"
    binary.write_bytes(b"\0\1" + HF_TOKEN.encode())
    target = write(tmp_path / "outside", "secret.txt", f"{HF_TOKEN}\n")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    assert run_script(str(binary), str(link)).returncode == 0


def test_a_directory_argument_is_a_usage_error(tmp_path):
    result = run_script(str(tmp_path))
    assert result.returncode == 2 and "not a file" in result.stderr


def git(root, *args):
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True, timeout=TIMEOUT)


@pytest.fixture
def repository(tmp_path):
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "--quiet")
    write(root, ".gitignore", "ignored.yml\n")
    write(root, "roles/x/defaults/main.yml", 'x_api_key: ""\n')
    git(root, "add", ".")
    return root


def test_without_arguments_it_scans_what_git_tracks(repository):
    write(repository, "untracked.yml", f"api_key: {API_KEY}\n")
    write(repository, "ignored.yml", f"api_key: {API_KEY}\n")
    subdirectory = repository / "roles" / "x"
    assert run_script(cwd=subdirectory).returncode == 0
    untracked = run_script("--untracked", cwd=subdirectory)
    assert untracked.returncode == 1 and untracked.stdout.startswith("untracked.yml:1: secret-assignment")
    write(repository, "group_vars/vault.yml", "vault_x: 1\n")
    git(repository, "add", "group_vars/vault.yml")
    tracked = run_script(cwd=repository)
    assert tracked.returncode == 1 and tracked.stdout == "group_vars/vault.yml:1: unencrypted-vault: " \
        "not encrypted with ansible-vault (first line is not $ANSIBLE_VAULT;...)\n"


def test_outside_a_repository_it_fails_with_status_2(tmp_path):
    env = {**os.environ, "GIT_CEILING_DIRECTORIES": str(tmp_path)}
    result = run_script(cwd=tmp_path, env=env)
    assert result.returncode == 2 and "cannot list the repository's files" in result.stderr


def test_this_repository_holds_no_secret():
    """Issue 9: the guard itself, on the files this repository tracks."""
    result = run_script(cwd=REPO)
    assert result.returncode == 0, result.stdout
