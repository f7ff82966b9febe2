"""The smoke_test role's task: the checks it asks the vllm_smoke_test module for."""

import pathlib

import yaml

TASKS = pathlib.Path(__file__).resolve().parents[3] / "roles" / "smoke_test" / "tasks" / "main.yml"


def _checks(role_renderer, **overrides):
    task = next(task for task in yaml.safe_load(TASKS.read_text()) if "vllm_smoke_test" in task)
    renderer = role_renderer("smoke_test", {}, var_files=(), overrides=overrides)
    return renderer.render(task["vllm_smoke_test"]["checks"])


def test_auth_runs_with_or_without_a_key(role_renderer):
    # Without a key the module reports whether the endpoint is open; with one it wants requests without it refused.
    assert _checks(role_renderer)[-1] == "auth"
    assert _checks(role_renderer, vllm_service_api_key="sk-0123")[-1] == "auth"
    assert _checks(role_renderer, smoke_test_checks=["models"]) == ["models", "auth"]


def test_the_streamed_checks_run_by_default(role_renderer):
    assert {"chat_stream", "tools_stream", "reasoning_stream"} <= set(_checks(role_renderer))


def test_the_node_is_tested_where_it_published_that_it_serves(role_renderer):
    """smoke_test_url and smoke_test_model: the node's local fact vllm_service (docs/node-facts.md), else its
    inventory values over the vllm_service and model_weights roles' defaults."""
    published = {"address": "10.40.0.11", "port": 8123, "url": "http://10.40.0.11:8123", "served_model_name": "ds"}
    renderer = role_renderer("smoke_test", {}, var_files=(), overrides={
        "hostvars": {"node1": {"ansible_local": {"vllm_service": published}}}})
    assert (renderer.var("smoke_test_url"), renderer.var("smoke_test_model")) == ("http://10.40.0.11:8123", "ds")
    renderer = role_renderer("smoke_test", {}, var_files=(), overrides={"hostvars": {"node1": {
        "ansible_host": "10.20.0.11", "vllm_service_port": 9000, "model_weights_repo_id": "org/other-model"}}})
    assert (renderer.var("smoke_test_url"), renderer.var("smoke_test_model")) == ("http://10.20.0.11:9000",
                                                                                  "org/other-model")
