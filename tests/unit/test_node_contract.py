"""Facts that cross roles are declared once, not restated (docs/node-facts.md).

A GPU node's endpoint is declared by the vllm_service role (its port default), the model_weights role (the model
id) and one filter (`vllm_service_endpoint`, with the reachable-address order in module_utils/inventory_hosts.py).
Everything else under roles/, playbooks/, site.yml and plugins/ must read them from there. This test fails when a
file restates:

- the vLLM port's default: the number 8000 in an expression, a URL or a value (`| default(8000)`, `':8000'`,
  `default_port: 8000`), anywhere but the definitions listed in DEFINITIONS;
- the model id (`deepseek-ai/DeepSeek-V3.2`), anywhere but model_weights' definition;
- the reachable-address expression: a host's default IPv4 address or its ansible_host read in an expression
  (`node['ansible_facts']['default_ipv4']['address'] | default(node['ansible_host'] ...)`), anywhere but the
  contract files, a role's defaults reading its own host's address, and the other purposes listed in
  ADDRESS_USES.

Documentation is left alone: READMEs, YAML and Python comments, argument spec descriptions, Python docstrings and
the DOCUMENTATION, EXAMPLES and RETURN strings of plugins. Other numbers (9090, 18000, 0x038000) are not the port.
"""

import ast
import pathlib
import re

import pytest
import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
# The one place that computes the endpoint and the reachable address.
CONTRACT = {"plugins/filter/vllm_service.py", "plugins/module_utils/inventory_hosts.py"}

PORT = re.compile(r"(?<![\w.])8000(?![\w.])")
MODEL = re.compile(r"deepseek-ai(/|--)DeepSeek-V3\.2", re.IGNORECASE)
# A host's address read in an expression: its default IPv4 address from its facts, or its ansible_host.
ADDRESS = re.compile(r"(?<!\w)(default_ipv4|ansible_host)(?!\w)")

# Where a value may be written down: (file, key path) -> why it is not a restatement.
DEFINITIONS = {
    "port": {
        ("roles/vllm_service/defaults/main.yml", "vllm_service_port"): "the owner: the node's vLLM port",
        ("roles/vllm_service/meta/argument_specs.yml", "argument_specs.main.options.vllm_service_port.default"):
            "the owner's argument spec, kept equal to its defaults by test_role_conventions.py",
        ("roles/vllm_service/vars/main.yml", "_vllm_service_container_port"):
            "vLLM's own port inside the container, which the unit publishes on vllm_service_port",
        ("roles/loadbalancer/defaults/main.yml", "loadbalancer_port"):
            "the balancer's own port for clients: the same number by choice, not the node's port",
        ("roles/loadbalancer/meta/argument_specs.yml", "argument_specs.main.options.loadbalancer_port.default"):
            "the balancer's argument spec",
    },
    "model": {
        ("roles/model_weights/defaults/main.yml", "model_weights_repo_id"): "the owner: the model to download",
        ("roles/model_weights/meta/argument_specs.yml", "argument_specs.main.options.model_weights_repo_id.default"):
            "the owner's argument spec",
    },
}
# Expressions that read a host's default IPv4 address or ansible_host for something other than reaching it:
# (file, key path, or for Python the string) -> why.
ADDRESS_USES = {
    ("roles/vllm_service/vars/main.yml", "_vllm_service_listen_address_known"):
        "whether the node's own facts give its default listen address yet (the controller's checks)",
    ("roles/vllm_service/vars/main.yml", "_vllm_service_endpoint"):
        "hands the node's own ansible_host to vllm_service_endpoint, which records the endpoint with it",
    ("roles/loadbalancer_vip/vars/main.yml", "_loadbalancer_vip_settings.balancers"):
        "each balancer's own default address, so that the virtual IP is refused when it is taken",
    ("roles/loadbalancer_vip/vars/main.yml", "_loadbalancer_vip_settings.inventory_hosts"):
        "every host's ansible_host, so that the virtual IP is refused when it is taken",
    ("plugins/filter/loadbalancer_vip.py", "ansible_host"): "reads the inventory_hosts entries above",
}
DOC_KEYS = {"description", "short_description"}
DOC_CONSTANTS = {"DOCUMENTATION", "EXAMPLES", "RETURN"}


def scanned_files():
    files = [REPO / "site.yml", *sorted((REPO / "playbooks").rglob("*.yml")), *sorted((REPO / "plugins").rglob("*.py"))]
    for suffix in ("*.yml", "*.yaml", "*.j2", "*.py"):
        files += sorted((REPO / "roles").rglob(suffix))
    return sorted({path.relative_to(REPO).as_posix() for path in files})


def _scalars(node, path=()):
    """(key path, value) of every scalar of a YAML document, descriptions left out."""
    if isinstance(node, dict):
        for key, value in node.items():
            if str(key) not in DOC_KEYS:
                yield from _scalars(value, (*path, str(key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _scalars(value, (*path, str(index)))
    elif node is not None:
        yield ".".join(path), node


def _under(path, prefix):
    return path == prefix or path.startswith(prefix + ".")


def _allowed(kind, relpath, keypath):
    return any(file == relpath and _under(keypath, key) for file, key in DEFINITIONS.get(kind, {}))


def _address_use_allowed(relpath, key):
    return any(file == relpath and _under(key, allowed) for file, allowed in ADDRESS_USES)


def _yaml_problems(relpath, text):
    problems = []
    is_defaults = relpath.endswith("/defaults/main.yml")
    for document in yaml.safe_load_all(text):
        for keypath, value in _scalars(document):
            where = f"{relpath}: {keypath}"
            if isinstance(value, bool):
                continue
            code = re.sub(r"\{#.*?#\}", "", str(value), flags=re.DOTALL)
            if (value == 8000 or PORT.search(code)) and not _allowed("port", relpath, keypath):
                problems.append(f"{where} restates the vLLM port's default ({code!r})")
            if MODEL.search(code) and not _allowed("model", relpath, keypath):
                problems.append(f"{where} restates the model id ({code!r})")
            found = set(ADDRESS.findall(code))
            # A role's defaults may default its own listen address to its own host's default IPv4 address.
            own_address = is_defaults and found == {"default_ipv4"} and "hostvars" not in code
            if found and not own_address and not _address_use_allowed(relpath, keypath):
                problems.append(f"{where} computes a host's address itself ({', '.join(sorted(found))}): use the "
                                "vllm_service_endpoint or inventory_host_address filter")
    return problems


def _template_problems(relpath, text):
    code = re.sub(r"\{#.*?#\}", "", text, flags=re.DOTALL)
    problems = []
    for number, line in enumerate(code.splitlines(), 1):
        if line.lstrip().startswith("#"):
            continue
        where = f"{relpath}:{number}"
        if PORT.search(line):
            problems.append(f"{where} restates the vLLM port's default ({line.strip()!r})")
        if MODEL.search(line):
            problems.append(f"{where} restates the model id ({line.strip()!r})")
        if ADDRESS.search(line):
            problems.append(f"{where} computes a host's address itself ({line.strip()!r})")
    return problems


def _python_constants(tree):
    """Constants of the code, without docstrings and the DOCUMENTATION, EXAMPLES and RETURN strings."""
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                skipped.add(id(body[0].value))
        if isinstance(node, ast.Assign) and any(isinstance(target, ast.Name) and target.id in DOC_CONSTANTS
                                                for target in node.targets):
            skipped.add(id(node.value))
    return [node for node in ast.walk(tree) if isinstance(node, ast.Constant) and id(node) not in skipped]


def _python_problems(relpath, text):
    problems = []
    for constant in _python_constants(ast.parse(text)):
        value, where = constant.value, f"{relpath}:{constant.lineno}"
        if isinstance(value, bool):
            continue
        if value == 8000 or (isinstance(value, str) and PORT.search(value)):
            problems.append(f"{where} restates the vLLM port's default ({value!r})")
        if isinstance(value, str) and MODEL.search(value):
            problems.append(f"{where} restates the model id ({value!r})")
        # A key read from a host's variables (messages that name them are prose).
        if value in ("default_ipv4", "ansible_host") and not _address_use_allowed(relpath, value):
            problems.append(f"{where} reads a host's {value} itself: use plugins/module_utils/inventory_hosts.py")
    return problems


def problems(relpath, text):
    """What a file restates, one message each."""
    if relpath in CONTRACT:
        return []
    if relpath.endswith(".py"):
        return _python_problems(relpath, text)
    if relpath.endswith(".j2"):
        return _template_problems(relpath, text)
    return _yaml_problems(relpath, text)


def test_no_file_restates_what_a_node_declares():
    found = [problem for relpath in scanned_files() for problem in problems(relpath, (REPO / relpath).read_text())]
    assert not found, "\n".join(found)


@pytest.mark.parametrize(("kind", "file", "key"), [(kind, file, key) for kind, entries in
                                                   {**DEFINITIONS, "address": ADDRESS_USES}.items()
                                                   for file, key in entries])
def test_every_exception_is_still_there(kind, file, key):
    """An exception whose value has gone would let a restatement in under its name."""
    text = (REPO / file).read_text()
    if file.endswith(".py"):
        assert f'"{key}"' in text, f"{file}: {key}"
        return
    paths = [path for document in yaml.safe_load_all(text) for path, value in _scalars(document)
             if _under(path, key) and ((value == 8000) if kind == "port" else
                                       bool(MODEL.search(str(value))) if kind == "model" else
                                       bool(ADDRESS.search(str(value))))]
    assert paths, f"{file}: {key} no longer holds the {kind}: remove its exception"


# Each re-adds a restatement that this change removed, in the real file: the scan must catch it.
REGRESSIONS = [
    ("roles/loadbalancer/vars/main.yml", "'port': endpoint.port",
     "'port': hostvars[host]['vllm_service_port'] | default(8000) | int", "port"),
    ("roles/loadbalancer/vars/main.yml", "'address': endpoint.address",
     "'address': hostvars[host]['ansible_facts']['default_ipv4']['address']"
     " | default(hostvars[host]['ansible_host'] | default(host, true), true)", "address"),
    ("roles/prometheus/vars/main.yml", "    address_variable: vllm_service_listen_address\n",
     "    address_variable: vllm_service_listen_address\n    default_port: 8000\n", "port"),
    ("roles/firewall/defaults/main.yml", "default('vllm_service_port' | role_default)", "default(8000)", "port"),
    ("roles/smoke_test/defaults/main.yml",
     "(hostvars[inventory_hostname] | vllm_service_endpoint(inventory_hostname)).url",
     "ansible_local['vllm_service']['url'] | default('http://' ~ inventory_hostname ~ ':8000')", "port"),
    ("playbooks/benchmark.yml", "{{ _benchmark_endpoint.served_model_name }}",
     "{{ _benchmark_node_vars['vllm_service_served_model_name'] | default('', true)"
     " or 'deepseek-ai/DeepSeek-V3.2' }}", "model"),
    ("roles/vllm_service/defaults/main.yml", "['repo_id'] | default('')",
     "['repo_id'] | default('deepseek-ai/DeepSeek-V3.2')", "model"),
    ("plugins/modules/vllm_smoke_test.py", 'model=dict(type="str", required=True)',
     'model=dict(type="str", default="deepseek-ai/DeepSeek-V3.2")', "model"),
    ("roles/loadbalancer/templates/haproxy.cfg.j2", "{{ server.address }}:{{ server.port }}",
     "{{ server.address }}:{{ server.port | default(8000) }}", "port"),
]
MESSAGES = {"port": "restates the vLLM port's default", "model": "restates the model id",
            "address": "address itself"}


@pytest.mark.parametrize(("relpath", "current", "restated", "kind"), REGRESSIONS,
                         ids=[f"{case[0]}-{case[3]}" for case in REGRESSIONS])
def test_a_restatement_put_back_is_caught(relpath, current, restated, kind):
    text = (REPO / relpath).read_text()
    assert current in text, f"{relpath} changed: update this case"
    assert problems(relpath, text) == []
    found = problems(relpath, text.replace(current, restated, 1))
    assert any(MESSAGES[kind] in problem for problem in found), found


@pytest.mark.parametrize(("relpath", "text"), [
    ("roles/prometheus/defaults/main.yml", "prometheus_port: 9090\n"),
    ("roles/x/vars/main.yml", "_x_port: 18000\n_x_other: \"{{ 80000 }}\"\n"),
    ("plugins/module_utils/x.py", "CLASSES = (0x030000, 0x038000)\n"),
    ("roles/x/vars/main.yml", "# vLLM listens on 8000 inside the container\n_x_y: 1\n"),
    ("roles/x/meta/argument_specs.yml",
     "argument_specs: {main: {options: {x_port: {type: int, description: 'like vllm_service_port (8000)'}}}}\n"),
    ("plugins/modules/x.py", 'EXAMPLES = r"""\n- x:\n    url: http://10.20.0.11:8000\n"""\n'),
    ("plugins/filter/x.py", 'MESSAGE = "set its ansible_host to its address"\n'),
    ("roles/x/defaults/main.yml", "x_listen_address: \"{{ ansible_facts['default_ipv4']['address'] }}\"\n"),
], ids=["prometheus-9090", "other-numbers", "pci-classes", "comment", "description", "examples", "message",
        "own-listen-address"])
def test_what_is_not_a_restatement_passes(relpath, text):
    assert problems(relpath, text) == []
