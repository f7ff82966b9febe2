"""Changes: a change of the image, the flags or the model restarts the service through its handler; nothing else
does; and a check-mode run of site.yml on the serving node reports and makes no change.

Each case runs the serve step of site.yml (playbooks/serve.yml) against the serving node with one changed setting
and compares the unit's start (InvocationID) before and after; a restarted service is smoke-tested. Another tag for
the same image goes through the prefetch step first, as site.yml and rolling_update.yml take it.
"""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from reliability_lab import NODE, REPO, ChangeWatch, node_sh, run_playbook, service_state

# The lab registry as this machine reaches it, and the tag the lab pushed, which the node pulls (inventories/sandbox:
# vllm_image_tag's default, the digest read from this machine's engine).
LAB = yaml.safe_load((REPO / "lab" / "vars.yml").read_text())
REGISTRY = f"127.0.0.1:{LAB['lab_registry_host_port']}/{LAB['lab_vllm_repository']}"
TAG = LAB["lab_vllm_tag"]
# The flag the "flags" case sets, which the tests after it pass again so as to change nothing else.
FLAG = {"vllm_service_extra_args": ["--max-num-seqs", "128"]}

CASES = [
    # (id, description, extra vars, restarts)
    ("unrelated", "settings that do not reach the server (smoke-test retries, progress intervals, the health "
     "timeout)", {"smoke_test_retries": 4, "model_weights_progress_interval": 3, "vllm_service_progress_interval": 5,
                  "vllm_service_health_timeout": 900}, False),
    # The flag stays until the next site.yml run of the later tests, which restarts without it.
    ("flags", "a vLLM flag (--max-num-seqs 128 through vllm_service_extra_args)", FLAG, True),
]


def test_check_mode_on_the_serving_node_changes_nothing(record):
    """site.yml --check --diff on the serving node"""
    # Before the cases below: the flags case leaves a changed setting for later tests to undo.
    watch = ChangeWatch("check-mode")
    watch.start()
    run = run_playbook("site.yml", args=("--check", "--diff"), log_name="check-mode")
    changed = watch.changes()
    recap = [line for line in run.output.split("PLAY RECAP")[-1].splitlines() if line.startswith(NODE)]
    record(done="site.yml --check --diff on the node as it serves",
           observed=f"rc {run.rc}; {recap[0].split(':', 1)[1].split('unreachable')[0].strip() if recap else 'no recap'}"
                    f"; files changed on the node: {len(changed)}")
    assert run.rc == 0, "check mode failed (reports/reliability/logs/check-mode.log)"
    assert recap and "changed=0" in recap[0], f"check mode predicts changes on a converged node: {recap}"
    assert changed == [], f"check mode changed files on the node: {changed[:20]}"
    assert watch.service_untouched(), "check mode restarted the service"


@pytest.mark.parametrize(("case_id", "description", "extra_vars", "restarts"), CASES, ids=[case[0] for case in CASES])
def test_only_a_change_of_what_the_server_runs_restarts_it(case_id, description, extra_vars, restarts, record):
    """A change of {description}"""
    before = service_state()
    serve = run_playbook("playbooks/serve.yml", extra_vars, log_name=f"change-{case_id}")
    after = service_state()
    restarted = after["InvocationID"] != before["InvocationID"]
    # A restarted service must serve again; one that was not restarted kept serving all along.
    smoke = run_playbook("playbooks/smoke.yml", extra_vars, log_name=f"change-{case_id}-smoke") if restarted else None
    record(done=f"serve.yml{' and smoke.yml' if smoke else ''} with {extra_vars}",
           observed=f"serve rc {serve.rc}; service {'restarted' if restarted else 'not restarted'}"
                    f"{'; smoke test ' + ('passed' if smoke.rc == 0 else 'FAILED') if smoke else ''}")
    assert serve.rc == 0 and (smoke is None or smoke.rc == 0)
    assert restarted == restarts


def test_another_tag_for_the_same_image_restarts_nothing(record):
    """Another tag for the same image (a relabel: vllm_image_tag moved, the digest the same)"""
    relabelled = f"{TAG}-relabelled"
    subprocess.run(["docker", "tag", f"{REGISTRY}:{TAG}", f"{REGISTRY}:{relabelled}"], check=True)
    subprocess.run(["docker", "push", "--quiet", f"{REGISTRY}:{relabelled}"], check=True, capture_output=True)
    before, unit = service_state(), node_sh("cat /etc/systemd/system/vllm.service")
    # What site.yml runs for an image change: the prefetch step takes the tag, the serve step applies it.
    runs = [run_playbook(f"playbooks/{step}.yml", {**FLAG, "vllm_image_tag": relabelled},
                         log_name=f"change-relabel-{step}") for step in ("prefetch", "serve")]
    image = json.loads(node_sh("cat /etc/ansible/facts.d/vllm_image.fact"))
    restarted = service_state()["InvocationID"] != before["InvocationID"]
    record(done=f"prefetch.yml and serve.yml with vllm_image_tag {relabelled} (the digest of {TAG})",
           observed=f"rc {', '.join(str(run.rc) for run in runs)}; the node records {image['reference']}; service "
                    f"{'restarted' if restarted else 'not restarted'}")
    assert [run.rc for run in runs] == [0, 0]
    # The node took the new tag (else the run proved nothing), and the unit, which runs the image by its ID, is
    # the same file: the service kept running.
    assert image["reference"].endswith(f":{relabelled}"), image
    assert node_sh("cat /etc/systemd/system/vllm.service") == unit
    assert not restarted
