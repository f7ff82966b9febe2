"""Every role keeps the project's conventions (docs/architecture.md, ../README.md)."""

import pathlib

import pytest
import yaml

from scripts import role_docs

REPO = pathlib.Path(__file__).resolve().parents[2]
ROLES = sorted(path for path in (REPO / "roles").iterdir() if path.is_dir())


def _load(path: pathlib.Path):
    return yaml.safe_load(path.read_text()) or {}


@pytest.mark.parametrize("role", ROLES, ids=lambda path: path.name)
def test_argument_specs_document_exactly_the_defaults(role):
    defaults = set(_load(role / "defaults" / "main.yml"))
    options = set(_load(role / "meta" / "argument_specs.yml")["argument_specs"]["main"].get("options", {}))
    assert defaults == options, f"only in defaults: {defaults - options}; only in specs: {options - defaults}"


@pytest.mark.parametrize("role", ROLES, ids=lambda path: path.name)
def test_spec_defaults_equal_the_defaults_and_are_plain_values(role):
    """A templated default in a spec is evaluated by Ansible's validation even when the variable is set."""
    defaults = _load(role / "defaults" / "main.yml")
    options = _load(role / "meta" / "argument_specs.yml")["argument_specs"]["main"].get("options", {})
    for name, option in options.items():
        if "default" in option:
            assert option["default"] == defaults[name], name
        else:
            assert "{{" in str(defaults[name]), f"{name}: give the spec its plain default"


@pytest.mark.parametrize("role", ROLES, ids=lambda path: path.name)
def test_public_variables_carry_the_role_prefix(role):
    for name in _load(role / "defaults" / "main.yml"):
        assert name.startswith(f"{role.name}_"), name


@pytest.mark.parametrize("role", ROLES, ids=lambda path: path.name)
def test_internal_variables_carry_an_underscore_and_the_role_prefix(role):
    vars_dir = role / "vars"
    for vars_file in sorted(vars_dir.glob("*.yml")) if vars_dir.is_dir() else []:
        for name in _load(vars_file):
            assert name.startswith(f"_{role.name}_"), f"{vars_file.name}: {name}"


@pytest.mark.parametrize("role", ROLES, ids=lambda path: path.name)
def test_readme_variables_table_is_current(role):
    readme = (role / "README.md").read_text()
    assert role_docs.render_readme(readme, role_docs.variables_table(role)) == readme, (
        "run scripts/role_docs.py"
    )


@pytest.mark.parametrize(
    "template",
    sorted((REPO / "roles").glob("*/templates/*.j2")),
    ids=lambda path: f"{path.parts[-3]}/{path.name}",
)
def test_templates_start_with_ansible_managed(template):
    assert template.read_text().startswith("{{ ansible_managed | comment }}")
