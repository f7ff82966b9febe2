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
