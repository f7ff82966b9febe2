"""Changes: a change of the image, the flags or the model restarts the service through its handler; nothing else
does.

Each case runs site.yml against the serving node with one changed setting and compares the unit's start
(InvocationID) before and after.
"""

from __future__ import annotations

import pytest

from conftest import run_playbook, service_state

CASES = [
    # (id, description, extra vars, restarts)
    ("unrelated", "settings that do not reach the server (smoke-test retries, progress interval, Docker's log "
     "rotation as it is)", {"smoke_test_retries": 4, "model_weights_progress_interval": 3,
                            "vllm_service_progress_interval": 5, "docker_log_max_file": 5}, False),
    ("flags", "a vLLM flag (--max-num-seqs 128 through vllm_service_extra_args)",
     {"vllm_service_extra_args": ["--max-num-seqs", "128"]}, True),
    ("flags-back", "the same flag removed again", {}, True),
]


@pytest.mark.parametrize(("case_id", "description", "extra_vars", "restarts"), CASES, ids=[case[0] for case in CASES])
def test_only_a_change_of_what_the_server_runs_restarts_it(case_id, description, extra_vars, restarts, record):
    """A change of {description}"""
    before = service_state()
    run = run_playbook("site.yml", extra_vars, log_name=f"change-{case_id}")
    after = service_state()
    restarted = after["InvocationID"] != before["InvocationID"]
    record(done=f"site.yml with {extra_vars or 'the scenario settings'}",
           observed=f"rc {run.rc}; service {'restarted' if restarted else 'not restarted'}; smoke test "
                    f"{'passed' if 'PASS reasoning' in run.output else 'did not pass'}")
    assert run.rc == 0
    assert restarted == restarts
    assert "PASS reasoning" in run.output
