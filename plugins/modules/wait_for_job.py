#!/usr/bin/python
"""Documentation of the wait_for_job action (plugins/action/wait_for_job.py), which has no module code.

As with Ansible's own action-only plugins, this file exists so that ansible-doc and ansible-lint know the action.
"""

from __future__ import annotations

DOCUMENTATION = r"""
module: wait_for_job
short_description: Wait for an async job, printing its progress on the controller, and return its result
description:
  - Follows a job started with C(async) and C(poll) set to 0 until it ends, then removes the job's status file
    and returns the job's own result - the same keys as the module that ran, C(failed) with its C(msg) if it
    failed.
  - >-
    Asks the target for the job's status (C(async_status)) at least every 10 seconds, and every O(interval)
    seconds reads O(progress_file) on the target (C(slurp)) and prints one line on the controller, for example
    "node1: 123.4 GB of 689.0 GB (17.9 %), 1.21 GB/s, ETA 7 min 47 s, 31/172 files".
  - The progress file is a JSON document with C(phase) (resolving, verifying, downloading, done, failed),
    C(bytes_done), C(bytes_total), C(rate_bytes_per_second), C(eta_seconds), C(files_done), C(files_total),
    C(message) and C(updated_at), as M(hf_model_snapshot) writes it; or C(phase) C(starting) with a C(message),
    printed as it is, as M(vllm_wait_ready) writes it. A line says so when the file has not been rewritten for a
    minute.
  - Without O(progress_file), or while the file does not exist yet, the line says the job is running. In check
    mode the file is not read (M(hf_model_snapshot) writes none then, so a file there is an earlier run's).
  - When O(timeout) runs out the task fails and the job keeps running on the target.
author: DeepSeek V3.2 on AMD Instinct project
options:
  jid:
    description: The job id, C(ansible_job_id) of the registered result of the async task.
    type: str
    required: true
  progress_file:
    description: Path on the target of the job's JSON progress document.
    type: str
  interval:
    description: Seconds between two progress lines (at least 1).
    type: float
    default: 30
  timeout:
    description: Seconds to wait for the job before failing (the job is not stopped).
    type: float
    default: 86400
attributes:
  action:
    support: full
  async:
    support: none
  check_mode:
    support: full
    details: Follows the job in check mode too (the async task ran in check mode).
  diff_mode:
    support: none
  platform:
    platforms: posix
notes:
  - Runs C(async_status) and C(slurp) with the task's connection and interpreter.
  - The job's status file lives in the shell's C(async_dir) (default C(~/.ansible_async)), as for C(async_status).
seealso:
  - module: ansible.builtin.async_status
  - module: hf_model_snapshot
"""

EXAMPLES = r"""
- name: Start the download
  hf_model_snapshot:
    repo_id: deepseek-ai/DeepSeek-V3.2
    hf_home: /srv/huggingface
    progress_file: /var/lib/model-weights/progress.json
  async: 172800
  poll: 0
  register: download_job

- name: Follow the download
  wait_for_job:
    jid: "{{ download_job.ansible_job_id }}"
    progress_file: /var/lib/model-weights/progress.json
    interval: 30
    timeout: 172800
  register: download
"""

RETURN = r"""
ansible_job_id:
  description: The job id.
  returned: always
  type: str
  sample: "360874038559.4169"
msg:
  description: The job's message, or why waiting failed (timeout, job not found).
  returned: when failed
  type: str
finished:
  description: False when O(timeout) ran out before the job ended.
  returned: when the timeout ran out
  type: bool
"""
