"""Action wait_for_job: follow an async job (`async: N`, `poll: 0`) to its end, printing its progress.

Every few seconds it asks the node for the job's status (async_status); every `interval` seconds it reads the
job's JSON progress file (slurp) and prints one line on the controller, for example

    node1: 123.4 GB of 689.0 GB (17.9 %), 1.21 GB/s, ETA 7 min 47 s, 31/172 files

When the job ends it removes the job's status file and returns the job's own result (failed if the job failed).
The progress file is the one hf_model_snapshot writes (module_utils/hf_weights.py, class Progress); any job
that writes the same keys gets the same lines.
"""

from __future__ import annotations

import base64
import json
import time

from ansible.errors import AnsibleConnectionFailure
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

display = Display()

# Keys that async_status adds to the job's result.
_JOB_BOOKKEEPING = ("started", "finished", "results_file", "invocation")
# Status checks run at least this often, so a job that ends is seen soon even with a long interval.
STATUS_POLL_SECONDS = 10.0
# A progress file not rewritten for this long (it is rewritten every few seconds) is reported as stale.
STALE_AFTER_SECONDS = 60.0


def format_size(count: float) -> str:
    """Bytes in decimal units with one decimal, as disk and network figures are quoted: 123.4 GB."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{int(count)} B"


def format_rate(per_second: float) -> str:
    """Three significant figures: 1.21 GB/s, 845 MB/s, 12.5 MB/s."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if per_second >= scale:
            value = per_second / scale
            break
    else:
        unit, value = "B", per_second
    decimals = 0 if value >= 100 else 1 if value >= 10 else 2
    return f"{value:.{decimals}f} {unit}/s"


def format_duration(seconds: float) -> str:
    """47 s, 7 min 47 s, 2 h 05 min, 1 d 03 h."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    if seconds < 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    return f"{seconds // 86400} d {seconds % 86400 // 3600:02d} h"


def format_progress(host: str, progress: dict | None, stale_seconds: float = 0.0) -> str:
    """One progress line from the progress document (None when there is none yet)."""
    if not progress:
        line = f"{host}: job running, no progress reported yet"
    else:
        phase = progress.get("phase")
        total = progress.get("bytes_total") or 0
        done = progress.get("bytes_done") or 0
        percent = 100.0 * done / total if total else 100.0
        amount = f"{format_size(done)} of {format_size(total)} ({percent:.1f} %)"
        files = f"{progress.get('files_done', 0)}/{progress.get('files_total', 0)} files"
        if phase == "starting":
            line = f"{host}: {progress.get('message') or 'starting'}"
        elif phase == "resolving":
            line = f"{host}: resolving {progress.get('repo_id', '?')}@{progress.get('revision', '?')}"
        elif phase == "verifying":
            line = f"{host}: verifying what is on disk, {amount} in place, {files}"
        elif phase == "downloading":
            eta = progress.get("eta_seconds")
            line = (f"{host}: {amount}, {format_rate(progress.get('rate_bytes_per_second') or 0)}, "
                    f"ETA {'unknown' if eta is None else format_duration(eta)}, {files}")
        elif phase == "done":
            line = f"{host}: done, {amount}, {files}"
        elif phase == "failed":
            line = f"{host}: failed: {progress.get('message') or 'see the task result'}"
        else:
            line = f"{host}: {phase}, {amount}, {files}"
    if stale_seconds >= STALE_AFTER_SECONDS:
        line += f" (no progress update for {format_duration(stale_seconds)})"
    return line


class ActionModule(ActionBase):
    """Wait for an async job, showing its progress; return its result."""

    _supports_check_mode = True
    _supports_async = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp  # no longer has any effect
        task_vars = task_vars or {}
        _, args = self.validate_argument_spec(argument_spec={
            "jid": {"type": "str", "required": True},
            "progress_file": {"type": "str"},
            "interval": {"type": "float", "default": 30},
            "timeout": {"type": "float", "default": 86400},
        })
        async_dir = self._remote_expand_user(self.get_shell_option("async_dir", default="~/.ansible_async"))
        try:
            result.update(self._follow(args, async_dir, task_vars))
        finally:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        return result

    def _follow(self, args: dict, async_dir: str, task_vars: dict) -> dict:
        host = task_vars.get("inventory_hostname", "?")
        jid, interval = args["jid"], max(1.0, args["interval"])
        # A check-mode job writes no progress: a file there would be an earlier run's.
        progress_file = None if self._task.check_mode else args["progress_file"]
        started = time.monotonic()
        deadline = started + args["timeout"]
        next_line = started + interval
        last_update, last_change, last_line = None, started, None
        while True:
            status = self._job_status(jid, async_dir, task_vars)
            # As Ansible's own async polling: done when finished, or when async_status itself failed cleanly.
            if status and (status.get("finished") or status.get("failed") and status.get("_ansible_parsed")):
                break
            now = time.monotonic()
            if now >= next_line:
                progress = self._read_progress(progress_file, task_vars)
                if progress and progress.get("updated_at") != last_update:
                    last_update, last_change = progress.get("updated_at"), now
                last_line = format_progress(host, progress, now - last_change if progress else 0.0)
                display.display(last_line)
                next_line = now + interval
            if now >= deadline:
                return {"failed": True, "ansible_job_id": jid, "finished": False,
                        "msg": f"job {jid} did not finish within {args['timeout']:.0f} s; it is still running on "
                               f"{host} (its status file is in {async_dir}). A re-run waits for it."}
            time.sleep(min(STATUS_POLL_SECONDS, interval, max(deadline - now, 0.0)))

        if status.get("msg") == "could not find job":
            return {"failed": True, "ansible_job_id": jid,
                    "msg": f"job {jid} was not found in {async_dir} on {host}: it was cleaned up already, or the "
                           "node restarted; run the play again."}
        if progress_file and not status.get("failed"):
            final_line = format_progress(host, self._read_progress(progress_file, task_vars))
            if final_line != last_line:
                display.display(final_line)
        self._execute_module(module_name="ansible.legacy.async_status", task_vars=task_vars,
                             module_args={"jid": jid, "mode": "cleanup", "_async_dir": async_dir})
        return {key: value for key, value in status.items() if key not in _JOB_BOOKKEEPING}

    def _job_status(self, jid: str, async_dir: str, task_vars: dict) -> dict | None:
        """The job's status, or None when the node could not be reached this time (it is asked again)."""
        try:
            return self._execute_module(module_name="ansible.legacy.async_status", task_vars=task_vars,
                                        module_args={"jid": jid, "mode": "status", "_async_dir": async_dir})
        except AnsibleConnectionFailure as error:
            display.warning(f"wait_for_job: could not ask for job {jid}, trying again: {error}")
            return None

    def _read_progress(self, path: str | None, task_vars: dict) -> dict | None:
        if not path:
            return None
        try:
            answer = self._execute_module(module_name="ansible.legacy.slurp", module_args={"src": path},
                                          task_vars=task_vars)
        except AnsibleConnectionFailure:
            return None
        if answer.get("failed") or "content" not in answer:
            return None
        try:
            progress = json.loads(base64.b64decode(answer["content"]))
        except ValueError:
            return None
        return progress if isinstance(progress, dict) else None
