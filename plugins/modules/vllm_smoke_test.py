#!/usr/bin/python
"""Ansible module vllm_smoke_test: proves a vLLM endpoint serving DeepSeek V3.2 answers like the vendor guide says.

The checks themselves live in module_utils/vllm_smoke.py; this file parses options, runs them, writes the report
and turns failed checks into a failed task.
"""

from __future__ import annotations

DOCUMENTATION = r"""
module: vllm_smoke_test
short_description: Smoke-test a vLLM server serving DeepSeek V3.2 (models, chat, tools, reasoning, streaming, auth)
description:
  - Sends the vendor guide's requests to vLLM's OpenAI-compatible API at O(base_url) and checks the answers.
  - C(models) - C(GET /v1/models) lists O(model).
  - C(chat) - "Hello, who are you?" gets status 200, a non-empty C(choices[0].message.content) and
    C(finish_reason) C(stop) or C(length).
  - C(tools) - the C(get_weather) request (San Francisco) gets a C(tool_calls) entry of type C(function) named
    C(get_weather) whose C(function.arguments) is a JSON string of an object whose C(location) is a string
    naming San Francisco (it starts with C(San Francisco), case-insensitive, as in C(San Francisco, CA)), and
    C(finish_reason) C(tool_calls). Tool call ids are not checked.
  - >-
    C(reasoning) - the train question, sent with C(chat_template_kwargs) C({"thinking": true}) (the guide's
    request omits it, and DeepSeek V3.2 thinks only when asked), gets a non-empty C(message.reasoning)
    (C(message.reasoning_content) on images older than vLLM 0.16; when C(GET /version) reports 0.16 or later,
    that old field passes with a warning saying so) and content whose final answer is 60 km/h -
    the last speed in km/h the content states, so C(Not 60 km/h; the answer is 50 km/h.) fails, and a
    conversion to other units after the answer does not count. Spellings, case-insensitive, after Markdown and
    LaTeX markup is removed - C(60) or C(60.0), optional spaces, then C(km/h), C(km / h), C(km/hr),
    C(km/hour), C(kmh), C(kmph), C(kph), C(km per hour), C(kilometers per hour) (also C(kilometres),
    C(an hour)), or C(km h^-1) (C(km·h⁻¹)). C(160 km/h) and C(60 mph) are not 60 km/h.
  - >-
    C(chat_stream), C(tools_stream), C(reasoning_stream) - the same three requests with C(stream) and
    C(stream_options.include_usage) (most clients stream, and vLLM parses tool calls and reasoning of a stream
    delta by delta, in other code than a whole answer). The deltas of C(choices[0]) must make the answer its
    non-streamed twin wants, judged the same way; tool calls are put together by C(index), the first delta of
    a call carrying C(id), C(type) and C(function.name), later ones pieces of C(function.arguments); no
    C(reasoning) (or C(reasoning_content)) delta may come after the content began; the stream must have a
    C(finish_reason), a usage chunk whose C(prompt_tokens) and C(completion_tokens) add up to C(total_tokens),
    and end with C(data: [DONE]).
  - >-
    C(auth) - a C(GET /v1/models) without the key gets 401 with vLLM's body C({"error": "Unauthorized"}). Every
    other request sends C(Authorization: Bearer <api_key>) when O(api_key) is set. Without O(api_key) the
    request still goes out, and says whether the endpoint is open - a 200 passes with a warning (a C(WARN)
    summary line saying the endpoint is open), a 401 passes.
  - Each request has its own O(timeout); transient failures (connection refused or reset, timeouts, HTTP 429 and
    5xx) are retried up to O(retries) times, O(retry_delay) seconds apart. A wrong answer is never retried.
  - Chat requests carry C(max_tokens) (512, 512, 4096) so a runaway generation ends on its own.
  - When C(/v1/models) gets no HTTP answer at all, the later checks are reported as skipped instead of each
    waiting for its own timeouts.
  - Failure details say what was expected and what came back (status, vLLM's C(error.message), an excerpt of the
    content) and name the likely fix for known vLLM errors (tool flags, C(--tokenizer-mode deepseek_v32),
    C(--reasoning-parser deepseek_v3), the API key, the served model name).
  - The task fails, with the summary as its message, when any check fails.
  - >-
    Meant to run on the controller (C(delegate_to: localhost)) against the address clients use, a node or a
    load balancer.
author: DeepSeek V3.2 on AMD Instinct project
options:
  base_url:
    description:
      - Root URL of the OpenAI-compatible server, for example C(http://10.20.0.11:8000). A trailing C(/v1) is
        ignored.
    type: str
    required: true
  model:
    description:
      - The model name clients send (vLLM's C(--served-model-name), by default the repository id); the smoke_test
        role gives the one the node published (docs/node-facts.md).
    type: str
    required: true
  api_key:
    description:
      - The service's API key (C(--api-key) or C(VLLM_API_KEY)). Sent as a bearer token; with it, the C(auth)
        check wants a request without it refused, without it, C(auth) reports whether the endpoint is open.
    type: str
  checks:
    description:
      - Checks to run, in this order. Duplicates are dropped.
      - Default is every check, in the order of the choices.
    type: list
    elements: str
    choices: [models, chat, chat_stream, tools, tools_stream, reasoning, reasoning_stream, auth]
  timeout:
    description:
      - Seconds one request may wait for the server (applied to the connection and to each read; vLLM sends a
        non-streamed answer in one piece, so this bounds the whole request, and a stream's next chunk). The
        reasoning answer of a 685B model can take a minute or more.
    type: float
    default: 300
  retries:
    description:
      - Further attempts of a request after a transient failure (0 means one attempt only).
    type: int
    default: 3
  retry_delay:
    description:
      - Seconds between attempts.
    type: float
    default: 10
  report_path:
    description:
      - Write the JSON report (settings without the key, results with every response body, summary, timing) to
        this path on the controller. Missing parent directories are created. A relative path is relative to the
        directory ansible runs in.
    type: path
  validate_certs:
    description:
      - Verify the server's TLS certificate when O(base_url) is https.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    details:
      - The checks are read-only requests, so they run in check mode too and their results are real. Only the
        report file is not written.
  diff_mode:
    support: none
  platform:
    platforms: posix
    description: Runs where it is executed; meant for the controller (C(delegate_to) C(localhost)).
notes:
  - The module never changes the server, and reports C(changed=false).
  - The O(api_key) never appears in results or the report.
seealso:
  - name: vLLM OpenAI-compatible server
    description: The API the checks speak.
    link: https://docs.vllm.ai/en/latest/serving/openai_compatible_server.html
"""

EXAMPLES = r"""
- name: Smoke-test the node through the address clients use
  vllm_smoke_test:
    base_url: http://10.20.0.11:8000
    model: deepseek-ai/DeepSeek-V3.2
  delegate_to: localhost

- name: Smoke-test the load balancer with the API key and keep a report
  vllm_smoke_test:
    base_url: https://llm.example.internal
    model: deepseek-ai/DeepSeek-V3.2
    api_key: "{{ vllm_service_api_key }}"
    timeout: 180
    retries: 3
    retry_delay: 10
    report_path: reports/smoke/{{ inventory_hostname }}.json
  delegate_to: localhost
  register: smoke

- name: Only the quick checks, after a restart
  vllm_smoke_test:
    base_url: http://10.20.0.11:8000
    model: deepseek-ai/DeepSeek-V3.2
    checks: [models, chat]
    timeout: 60
  delegate_to: localhost
"""

RETURN = r"""
passed:
  description: Whether every check passed.
  returned: always
  type: bool
  sample: true
summary:
  description:
    - One line per check - PASS, WARN or FAIL, the check, what came back, and for a failure the likely fix.
    - WARN is a check that passed with something to know (C(warning)), such as an open endpoint.
  returned: always
  type: list
  elements: str
  sample:
    - "PASS models: 200, serves deepseek-ai/DeepSeek-V3.2 (max_model_len 163840) in 0.0 s"
    - "WARN auth: 200 without a key: the endpoint is open, and no API key is configured in 0.0 s. Anyone who
      reaches base_url can use the model: ..."
    - "FAIL tools: expected 200 with a function tool call get_weather ...; got 400 BadRequestError:
      \"\\\"auto\\\" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set\".
      Likely fix: start vLLM with --enable-auto-tool-choice --tool-call-parser deepseek_v32 ..."
results:
  description: One entry per check, in the order they ran.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The check (one of the O(checks) choices).
      type: str
    passed:
      description: Whether the check passed.
      type: bool
    detail:
      description: What came back; for a failure also what was expected.
      type: str
    hint:
      description: The likely fix of a failure with a known cause.
      type: str
      returned: when the check failed and the cause is known
    warning:
      description: What to know about a check that passed, such as an endpoint open to anyone.
      type: str
      returned: when the check passed with something to know
    skipped:
      description: True when the check did not run because /v1/models got no answer.
      type: bool
      returned: when skipped
    request:
      description: Method and path of the request.
      type: str
      returned: when the check ran
      sample: POST /v1/chat/completions
    status:
      description: HTTP status of the last attempt, null when no answer came back.
      type: int
    latency_s:
      description: Seconds the last attempt took.
      type: float
    attempts:
      description: Every attempt's status, latency_s and transport error (null when an HTTP answer came).
      type: list
      elements: dict
    response:
      description:
        - The last answer's body (parsed JSON, or text), with strings longer than 2000 characters cut.
        - >-
          For a streamed check, what the stream makes instead - C(chunks), the reassembled C(message),
          C(finish_reason), C(usage), C(done) (ended by C(data: [DONE])), and the C(problems) found.
        - The report has it for every check that ran.
      type: raw
      returned: when the check ran and failed
report_path:
  description: Absolute path of the JSON report written.
  returned: when O(report_path) is set and not in check mode
  type: str
  sample: /srv/ansible/reports/smoke/node1.json
"""

import datetime
import json
import os
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.vllm_smoke import CHECKS, SmokeSettings, run_checks, summary_line


def _checks(module: AnsibleModule) -> list[str]:
    requested = module.params["checks"]
    if requested is None:
        return list(CHECKS)
    checks = list(dict.fromkeys(requested))
    if not checks:
        module.fail_json(msg="checks is empty: name at least one of " + ", ".join(CHECKS))
    return checks


def _validate_budget(module: AnsibleModule) -> None:
    params = module.params
    if params["timeout"] <= 0:
        module.fail_json(msg=f"timeout must be more than 0 seconds, got {params['timeout']:g}")
    if params["retries"] < 0:
        module.fail_json(msg=f"retries must be 0 or more, got {params['retries']}")
    if params["retry_delay"] < 0:
        module.fail_json(msg=f"retry_delay must be 0 or more seconds, got {params['retry_delay']:g}")


def _without_response(result: dict) -> dict:
    return {key: value for key, value in result.items() if key != "response"}


def _write_report(path: str, report: dict) -> str:
    """Write atomically, so a reader never sees half a report; returns the absolute path."""
    path = os.path.abspath(path)
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=".vllm_smoke_", suffix=".json")
    try:
        with os.fdopen(descriptor, "w") as stream:
            json.dump(report, stream, indent=2, ensure_ascii=False)
            stream.write("\n")
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
    return path


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            base_url=dict(type="str", required=True),
            model=dict(type="str", required=True),
            api_key=dict(type="str", no_log=True),
            checks=dict(type="list", elements="str", choices=list(CHECKS)),
            timeout=dict(type="float", default=300.0),
            retries=dict(type="int", default=3),
            retry_delay=dict(type="float", default=10.0),
            report_path=dict(type="path"),
            validate_certs=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    params = module.params
    checks = _checks(module)
    _validate_budget(module)
    settings = SmokeSettings(
        base_url=params["base_url"],
        model=params["model"],
        api_key=params["api_key"] or None,
        timeout=params["timeout"],
        retries=params["retries"],
        retry_delay=params["retry_delay"],
        validate_certs=params["validate_certs"],
    )

    started_at = datetime.datetime.now(datetime.timezone.utc)
    started = time.monotonic()
    results = run_checks(checks, settings)
    passed = all(result["passed"] for result in results)
    summary = [summary_line(result) for result in results]
    # Bodies of passed checks only lengthen the task's output; the report keeps every body.
    returned = [_without_response(result) if result["passed"] else result for result in results]
    outcome = dict(changed=False, passed=passed, results=returned, summary=summary)

    if params["report_path"] and not module.check_mode:
        report = {
            "base_url": settings.base_url,
            "model": settings.model,
            "api_key_sent": settings.api_key is not None,
            "checks": checks,
            "started_at": started_at.isoformat(timespec="seconds"),
            "duration_s": round(time.monotonic() - started, 3),
            "passed": passed,
            "summary": summary,
            "results": results,
        }
        try:
            outcome["report_path"] = _write_report(params["report_path"], report)
        except OSError as error:
            module.fail_json(msg=f"could not write the report to {params['report_path']}: {error}", **outcome)

    if not passed:
        failed = sum(not result["passed"] for result in results)
        module.fail_json(
            msg=f"{failed} of {len(results)} vLLM smoke checks failed at {settings.base_url}:\n" + "\n".join(summary),
            **outcome,
        )
    module.exit_json(**outcome)


if __name__ == "__main__":
    main()
