#!/usr/bin/python
"""Ansible module vllm_wait_ready: waits on a node for its vLLM service to answer /health, following its start-up.

Meant to run as an async job followed by the wait_for_job action, which prints the phase this module writes to
its progress file ("loading the weights (74/163 shards), 3 min 10 s").
"""

from __future__ import annotations

DOCUMENTATION = r"""
module: vllm_wait_ready
short_description: Wait for a vLLM systemd service to become healthy, reporting its start-up phase
description:
  - Polls O(url) (vLLM's C(/health)) until it answers 200, for at most O(timeout) seconds.
  - Meanwhile reads the service's journal (this start only) and writes the start-up phase it shows - parsing the
    configuration, loading the weights (with the shard count when vLLM logs it), profiling memory, warming up
    kernels, capturing graphs, starting the API server - with the elapsed time to O(progress_file), for the
    C(wait_for_job) action to print on the controller.
  - Fails at once, with the last O(journal_lines) lines of the journal, when the service exits during start-up
    (systemd's C(NRestarts) grows, or the unit fails or waits to restart), instead of waiting for the timeout.
author: DeepSeek V3.2 on AMD Instinct project
options:
  unit:
    description: The systemd unit that runs the container.
    type: str
    default: vllm
  url:
    description: The health URL, for example C(http://10.20.0.11:8000/health).
    type: str
    required: true
  timeout:
    description: Seconds to wait before failing.
    type: int
    default: 1800
  poll_interval:
    description: Seconds between two health checks.
    type: float
    default: 5
  progress_file:
    description: Path of the JSON progress document (C(phase) C(starting), C(message), C(updated_at)).
    type: path
  journal_lines:
    description: Journal lines shown when the start fails.
    type: int
    default: 60
attributes:
  check_mode:
    support: full
    details: Waits and reads only; in check mode it does not write the progress file.
  diff_mode:
    support: none
  platform:
    platforms: posix
requirements:
  - systemd (systemctl, journalctl)
seealso:
  - module: wait_for_job
"""

EXAMPLES = r"""
- name: Follow the start-up of the service
  vllm_wait_ready:
    unit: vllm
    url: http://10.20.0.11:8000/health
    timeout: 1800
    progress_file: /run/vllm-start.json
  async: 1860
  poll: 0
  register: start_job

- name: Wait for /health, printing the start-up phase
  wait_for_job:
    jid: "{{ start_job.ansible_job_id }}"
    progress_file: /run/vllm-start.json
    interval: 15
    timeout: 1860
"""

RETURN = r"""
elapsed:
  description: Seconds from the start of the wait until /health answered.
  type: float
  returned: success
  sample: 412.5
phase:
  description: The last start-up phase the journal showed.
  type: str
  returned: always
  sample: "API server up, waiting for /health"
errors:
  description: The exception lines of the failed start's log, first seen first (the root cause usually first).
  type: list
  elements: str
  returned: failure
  sample: ["torch.OutOfMemoryError: HIP out of memory. Tried to allocate 7.00 GiB."]
journal:
  description: The last O(journal_lines) lines of the unit's journal.
  type: str
  returned: failure
"""

import json
import os
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import open_url
from ansible.module_utils.vllm_startup import crash_reason, error_lines, parse_systemctl_show, startup_phase

_UNIT_PROPERTIES = ("ActiveState", "SubState", "Result", "NRestarts", "ExecMainStatus", "InvocationID")


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds} s" if seconds < 60 else f"{seconds // 60} min {seconds % 60} s"


class StartupFollower:
    """Polls /health, the unit's state and its journal until the service is up, has crashed, or time runs out."""

    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.params = module.params
        self.cursor = None
        self.phase = "container starting"
        self.invocation = None
        self.lines: list[str] = []  # this start's journal, for the errors of a failed start

    def unit_state(self) -> dict:
        argv = ["systemctl", "show", self.params["unit"]] + [f"--property={name}" for name in _UNIT_PROPERTIES]
        rc, out, err = self.module.run_command(argv)
        if rc != 0:
            self.module.fail_json(msg=f"systemctl show {self.params['unit']} failed: {err.strip()}")
        return parse_systemctl_show(out)

    def read_new_journal(self, invocation: str) -> list[str]:
        """Journal lines of this invocation written since the last call."""
        argv = ["journalctl", "--no-pager", "--output=cat", "--show-cursor", f"_SYSTEMD_INVOCATION_ID={invocation}"]
        argv += [f"--after-cursor={self.cursor}"] if self.cursor else []
        rc, out, _ = self.module.run_command(argv)
        if rc != 0:
            return []
        lines = out.splitlines()
        if lines and lines[-1].startswith("-- cursor: "):
            self.cursor = lines.pop()[len("-- cursor: "):]
        self.lines = (self.lines + lines)[-5000:]
        return lines

    def journal_tail(self) -> str:
        argv = ["journalctl", "--no-pager", "--output=cat", f"--unit={self.params['unit']}",
                f"--lines={self.params['journal_lines']}"]
        _, out, _ = self.module.run_command(argv)
        return out.rstrip()

    def healthy(self) -> bool:
        try:
            return open_url(self.params["url"], method="GET", timeout=5).status == 200
        except Exception:  # refused, reset, 5xx, timeout: not up yet
            return False

    def write_progress(self, message: str) -> None:
        path = self.params["progress_file"]
        if not path or self.module.check_mode:
            return
        document = {"phase": "starting", "message": message, "updated_at": time.time()}
        directory = os.path.dirname(path) or "."
        descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=".progress-")
        with os.fdopen(descriptor, "w") as handle:
            json.dump(document, handle)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)

    def fail(self, reason: str) -> None:
        unit, journal = self.params["unit"], self.journal_tail()
        if self.invocation:
            self.read_new_journal(self.invocation)
        errors = error_lines(self.lines)
        self.write_progress(f"failed: {reason}")
        summary = f"Errors in its log: {' | '.join(errors)}. " if errors else ""
        self.module.fail_json(
            msg=f"{unit} did not come up ({self.phase}): {reason}. {summary}Last lines of `journalctl -u {unit}`:\n"
                f"{journal}",
            phase=self.phase, errors=errors, journal=journal)

    def run(self) -> None:
        started = time.monotonic()
        deadline = started + self.params["timeout"]
        baseline = self.unit_state()
        # Follow the start that was under way when the wait began; a restart after a crash is another one.
        self.invocation = baseline.get("InvocationID") or None
        while True:
            if self.healthy():
                elapsed = time.monotonic() - started
                self.write_progress(f"healthy after {_duration(elapsed)}")
                self.module.exit_json(changed=False, elapsed=round(elapsed, 1), phase=self.phase)
            current = self.unit_state()
            reason = crash_reason(baseline, current)
            if reason:
                self.fail(reason)
            if self.invocation:
                self.phase = startup_phase(self.read_new_journal(self.invocation), self.phase)
            elapsed = time.monotonic() - started
            self.write_progress(f"{self.params['unit']}: {self.phase}, {_duration(elapsed)} since the wait began")
            if time.monotonic() >= deadline:
                self.fail(f"no healthy answer from {self.params['url']} within {self.params['timeout']} s "
                          f"(last phase: {self.phase})")
            time.sleep(self.params["poll_interval"])


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "unit": {"type": "str", "default": "vllm"},
            "url": {"type": "str", "required": True},
            "timeout": {"type": "int", "default": 1800},
            "poll_interval": {"type": "float", "default": 5},
            "progress_file": {"type": "path"},
            "journal_lines": {"type": "int", "default": 60},
        },
        supports_check_mode=True,
    )
    StartupFollower(module).run()


if __name__ == "__main__":
    main()
