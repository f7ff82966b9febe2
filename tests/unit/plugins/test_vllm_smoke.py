"""The vLLM smoke checks: validators against vLLM 0.33-shaped bodies and streams (fixtures/vllm), the retry
policy, the vllm_smoke_test module end to end against a threaded stdlib HTTP server that answers like vLLM, and
every check against the vLLM stand-in (lab/vllm), which generates its streams as vLLM 0.33 does."""

import http.server
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import threading
import time

import pytest
from ansible.module_utils import vllm_smoke  # plugins/module_utils/, through tests/unit/conftest.py

from tests.helpers import module_runner
from lab.vllm import test_vllm_standin as standin_tests
from tests.unit.plugins.fixtures.vllm import make_fixtures

REPO = pathlib.Path(__file__).resolve().parents[3]
FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures" / "vllm"
MODEL = "deepseek-ai/DeepSeek-V3.2"
API_KEY = "sk-smoke-7f2c9d41e8"

KEYED = vllm_smoke.SmokeSettings("http://vllm:8000", MODEL, api_key=API_KEY)
OPEN = vllm_smoke.SmokeSettings("http://vllm:8000", MODEL)


def fixture(name: str):
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def stream_fixture(name: str) -> list[dict]:
    """The chunks of a stream fixture, [DONE] left out."""
    text = (FIXTURES / name).read_text(encoding="utf-8")
    return [json.loads(line[len("data: ") :]) for line in text.splitlines() if line.startswith("data: {")]


def sse(chunks, done=True) -> str:
    """An event stream of `chunks` as vLLM writes it, closed by [DONE] unless `done` is false."""
    events = [json.dumps(chunk, ensure_ascii=False) for chunk in chunks] + (["[DONE]"] if done else [])
    return "".join(f"data: {event}\n\n" for event in events)


def test_fixtures_are_what_make_fixtures_builds():
    assert {path.name for path in FIXTURES.glob("*.json")} == set(make_fixtures.FIXTURES)
    assert {path.name for path in FIXTURES.glob("*.sse")} == set(make_fixtures.STREAMS)
    for name, body in make_fixtures.FIXTURES.items():
        assert (FIXTURES / name).read_text(encoding="utf-8") == make_fixtures.render(body), name
    for name, chunks in make_fixtures.STREAMS.items():
        assert (FIXTURES / name).read_text(encoding="utf-8") == make_fixtures.render_stream(chunks), name


# Requests -------------------------------------------------------------------------------------------------


def test_requests_are_the_guides_with_thinking_for_the_reasoning_check():
    chat = vllm_smoke.chat_request(MODEL)
    tools = vllm_smoke.tools_request(MODEL)
    reasoning = vllm_smoke.reasoning_request(MODEL)
    assert chat.payload["messages"] == [{"role": "user", "content": "Hello, who are you?"}]
    assert tools.payload["messages"][0]["content"] == "What is the weather in San Francisco?"
    assert tools.payload["tools"][0]["function"]["name"] == "get_weather"
    assert tools.payload["tools"][0]["function"]["parameters"]["required"] == ["location"]
    assert "tool_choice" not in tools.payload
    assert "120km in 2 hours, and then 180km in 3 hours" in reasoning.payload["messages"][0]["content"]
    assert reasoning.payload["chat_template_kwargs"] == {"thinking": True}
    assert "chat_template_kwargs" not in chat.payload
    for request in (chat, tools, reasoning):
        assert (request.method, request.path, request.payload["model"]) == ("POST", "/v1/chat/completions", MODEL)
        assert request.send_key
    assert vllm_smoke.models_request(MODEL) == ("GET", "/v1/models", None, True)
    assert vllm_smoke.auth_request(MODEL) == ("GET", "/v1/models", None, False)


@pytest.mark.parametrize("name", ["chat", "tools", "reasoning"])
def test_streamed_checks_stream_their_twins_request_and_ask_for_usage(name):
    plain = vllm_smoke.BUILDERS[name](MODEL)
    streamed = vllm_smoke.BUILDERS[name + "_stream"](MODEL)
    assert streamed.payload == {**plain.payload, "stream": True, "stream_options": {"include_usage": True}}
    assert (streamed.method, streamed.path, streamed.send_key) == (plain.method, plain.path, plain.send_key)


# Validators against the fixtures ----------------------------------------------------------------------------

H = vllm_smoke
# fmt: off
VALIDATOR_CASES = [
    # (check, status, fixture, passed, words in detail, hint)
    ("models", 200, "models_list.json", True, ["serves deepseek-ai/DeepSeek-V3.2", "163840"], None),
    ("models", 401, "error_unauthorized_401.json", False, ['401 {"error": "Unauthorized"}'], H.HINT_API_KEY),
    ("chat", 200, "chat_ok.json", True, ["finish_reason stop", "I'm DeepSeek"], None),
    ("chat", 200, "chat_empty_content.json", False, ['content ""'], H.HINT_EMPTY_ANSWER),
    ("chat", 400, "error_chat_template_400.json", False,
     ["400 BadRequestError", "default chat template is no longer allowed"], H.HINT_TOKENIZER_MODE),
    ("chat", 404, "error_model_not_found_404.json", False, ["404 NotFoundError", "does not exist"],
     H.HINT_MODEL_NAME + " (served: deepseek-ai/DeepSeek-V3.2)"),
    ("chat", 503, "error_retryable_503.json", False, ["503 ServiceUnavailableError", "please retry"], H.HINT_ENGINE),
    ("tools", 200, "tools_ok.json", True, ['get_weather({"location": "San Francisco"})', "tool_calls"], None),
    ("tools", 200, "tools_arguments_not_json.json", False, ["function.arguments that is not JSON", "DSML"],
     H.HINT_TOOL_PARSER),
    ("tools", 200, "tools_missing.json", False,
     ["no tool_calls", "real-time weather", "finish_reason 'stop'"], H.HINT_TOOLS_IGNORED),
    ("tools", 400, "error_tool_choice_400.json", False,
     ['\\"auto\\" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set'],
     H.HINT_TOOL_FLAGS),
    ("reasoning", 200, "reasoning_ok.json", True, ["reasoning of", "60 km/h"], None),
    ("reasoning", 200, "reasoning_content_old.json", True, ["reasoning_content of", "boxed"], None),
    ("reasoning", 200, "reasoning_missing.json", False, ["no reasoning"], H.HINT_REASONING_OFF),
    ("reasoning", 200, "reasoning_wrong_answer.json", False, ["final speed is 50 km/h, not 60 km/h"], None),
    ("reasoning", 400, "error_chat_template_400.json", False, ["400 BadRequestError"], H.HINT_TOKENIZER_MODE),
    ("auth", 401, "error_unauthorized_401.json", True, ['401 {"error": "Unauthorized"}'], None),
    ("auth", 200, "models_list.json", False, ["200: the request without a key was served"], H.HINT_NO_AUTH),
]
# fmt: on


@pytest.mark.parametrize(
    "check, status, name, passed, words, hint", VALIDATOR_CASES, ids=[f"{c[0]}-{c[2]}" for c in VALIDATOR_CASES]
)
def test_validator_on_fixture(check, status, name, passed, words, hint):
    result = vllm_smoke.validate(check, status, fixture(name), KEYED)
    assert (result["name"], result["passed"]) == (check, passed), result["detail"]
    for word in words:
        assert word in result["detail"]
    if not passed:
        assert result["detail"].startswith("expected ")
    assert result.get("hint") == hint


# Streamed checks --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "check, name, words",
    [
        (
            "chat_stream",
            "chat_stream_ok.sse",
            ["chunks", "finish_reason stop", "I'm DeepSeek", "usage 13+36", "[DONE]"],
        ),
        ("tools_stream", "tools_stream_ok.sse", ['get_weather({"location": "San Francisco"})', "tool_calls"]),
        ("reasoning_stream", "reasoning_stream_ok.sse", ["reasoning of 320 characters", "60 km/h**", "[DONE]"]),
    ],
)
def test_a_stream_that_follows_vllm_passes(check, name, words):
    result = vllm_smoke.validate(check, 200, (FIXTURES / name).read_text(encoding="utf-8"), KEYED)
    assert result["passed"], result["detail"]
    assert all(word in result["detail"] for word in words), result["detail"]


def _stream_variant(check, name, change, version=None, done=True):
    chunks = stream_fixture(name)
    change(chunks)
    return vllm_smoke.validate(check, 200, sse(chunks, done), KEYED, version)


def _deltas(chunks):
    return [chunk["choices"][0]["delta"] for chunk in chunks if chunk["choices"]]


def test_streamed_tool_call_arguments_are_judged_like_the_whole_answer():
    def paris(chunks):
        _deltas(chunks)[3]["tool_calls"][0]["function"]["arguments"] = "Paris"

    result = _stream_variant("tools_stream", "tools_stream_ok.sse", paris)
    assert not result["passed"] and '"location" "Paris" does not name San Francisco' in result["detail"]


@pytest.mark.parametrize(
    "change, problem",
    [
        (lambda deltas: deltas[2]["tool_calls"][0].pop("index"), "a tool_calls delta without an index"),
        (lambda deltas: deltas[1]["tool_calls"][0].pop("id"), "tool call 0's first delta without id"),
        (
            lambda deltas: deltas[1]["tool_calls"][0]["function"].pop("name"),
            "tool call 0's first delta without function.name",
        ),
    ],
)
def test_tool_call_deltas_need_vllms_shape_to_reassemble(change, problem):
    result = _stream_variant("tools_stream", "tools_stream_ok.sse", lambda chunks: change(_deltas(chunks)))
    assert not result["passed"] and problem in result["detail"]
    assert result["hint"] == vllm_smoke.HINT_STREAM_CHANGED


def test_reasoning_must_come_before_the_content():
    def interleave(chunks):
        deltas = _deltas(chunks)
        first_content = next(index for index, delta in enumerate(deltas) if delta.get("content"))
        deltas[first_content + 3].clear()
        deltas[first_content + 3]["reasoning"] = " On second thought"

    result = _stream_variant("reasoning_stream", "reasoning_stream_ok.sse", interleave)
    assert not result["passed"] and "reasoning deltas after the content began" in result["detail"]


def test_the_streamed_answer_is_judged_by_its_final_speed():
    def wrong(chunks):
        _deltas(chunks)[-2]["content"] = "** (not 60 km/h: 50 km/h)"

    result = _stream_variant("reasoning_stream", "reasoning_stream_ok.sse", wrong)
    assert not result["passed"] and "final speed is 50 km/h, not 60 km/h" in result["detail"]


def test_streamed_reasoning_content_from_a_new_server_is_called_the_old_field():
    def rename(chunks):
        for delta in _deltas(chunks):
            if "reasoning" in delta:
                delta["reasoning_content"] = delta.pop("reasoning")

    result = _stream_variant("reasoning_stream", "reasoning_stream_ok.sse", rename, version="0.33.0")
    assert result["passed"] and "reasoning_content of 320 characters" in result["detail"]
    assert result["warning"] == vllm_smoke.legacy_field_warning("0.33.0")
    assert "warning" not in _stream_variant("reasoning_stream", "reasoning_stream_ok.sse", rename, version="0.15.1")


@pytest.mark.parametrize(
    "change, done, problem, hint",
    [
        (lambda chunks: None, False, "no data: [DONE] at the end", vllm_smoke.HINT_STREAM_CUT),
        (lambda chunks: chunks[-2]["choices"][0].update(finish_reason=None), True, "no finish_reason", None),
        (lambda chunks: chunks.pop(), True, "no usage chunk", vllm_smoke.HINT_STREAM_CHANGED),
        (
            lambda chunks: chunks[-1]["usage"].update(total_tokens=1),
            True,
            "a usage chunk whose tokens do not add up",
            vllm_smoke.HINT_STREAM_CHANGED,
        ),
        (
            lambda chunks: chunks.insert(-2, {"error": {"message": "EngineCore died", "type": "InternalServerError"}}),
            True,
            'an error in the stream: "EngineCore died"',
            vllm_smoke.HINT_ENGINE,
        ),
    ],
)
def test_a_stream_ends_with_a_finish_reason_usage_and_done(change, done, problem, hint):
    result = _stream_variant("chat_stream", "chat_stream_ok.sse", change, done=done)
    assert not result["passed"] and problem in result["detail"]
    assert hint is None or hint in result["hint"]


def test_a_stream_request_answered_with_json_fails():
    result = vllm_smoke.validate("chat_stream", 200, fixture("chat_ok.json"), KEYED)
    assert not result["passed"] and "a JSON body instead of an event stream" in result["detail"]
    assert result["hint"] == vllm_smoke.HINT_NOT_STREAMED
    refused = vllm_smoke.validate("tools_stream", 400, fixture("error_tool_choice_400.json"), KEYED)
    assert not refused["passed"] and refused["hint"] == vllm_smoke.HINT_TOOL_FLAGS


def _tools_variant(change):
    body = fixture("tools_ok.json")
    change(body["choices"][0])
    return vllm_smoke.validate_completion("tools", 200, body)


def test_tool_arguments_must_be_a_json_string_of_an_object_with_location():
    as_object = _tools_variant(
        lambda choice: choice["message"]["tool_calls"][0]["function"].update(arguments={"location": "SF"})
    )
    assert not as_object["passed"] and "function.arguments of type dict, not a JSON string" in as_object["detail"]
    no_location = _tools_variant(
        lambda choice: choice["message"]["tool_calls"][0]["function"].update(arguments='{"city": "San Francisco"}')
    )
    assert not no_location["passed"] and 'without "location"' in no_location["detail"]
    as_list = _tools_variant(lambda choice: choice["message"]["tool_calls"][0]["function"].update(arguments="[1]"))
    assert not as_list["passed"] and "not an object" in as_list["detail"]


@pytest.mark.parametrize("location", ["San Francisco", "San Francisco, CA", "san francisco, California, USA"])
def test_a_location_naming_san_francisco_passes(location):
    result = _tools_variant(
        lambda choice: choice["message"]["tool_calls"][0]["function"].update(
            arguments=json.dumps({"location": location})
        )
    )
    assert result["passed"], result["detail"]


@pytest.mark.parametrize("location", ["", 123, None, "Paris", "SF", "South San Francisco", "San Franciscan"])
def test_a_location_that_does_not_name_san_francisco_fails(location):
    result = _tools_variant(
        lambda choice: choice["message"]["tool_calls"][0]["function"].update(
            arguments=json.dumps({"location": location})
        )
    )
    assert not result["passed"]
    assert f'"location" {json.dumps(location)} does not name San Francisco' in result["detail"]


def test_tool_call_needs_finish_reason_tool_calls_and_the_right_function():
    stopped = _tools_variant(lambda choice: choice.update(finish_reason="length"))
    assert not stopped["passed"] and "finish_reason 'length'" in stopped["detail"]
    assert stopped["hint"] == vllm_smoke.HINT_LENGTH
    other = _tools_variant(lambda choice: choice["message"]["tool_calls"][0]["function"].update(name="get_time"))
    assert not other["passed"] and "tool calls to get_time" in other["detail"]


def test_unparsed_dsml_in_content_points_at_the_tool_flags():
    raw = (
        '<｜DSML｜function_calls>\n<｜DSML｜invoke name="get_weather">\n<｜DSML｜parameter name="location" '
        'string="true">San Francisco</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜function_calls>'
    )
    body = fixture("tools_missing.json")
    body["choices"][0]["message"]["content"] = raw
    result = vllm_smoke.validate_completion("tools", 200, body)
    assert not result["passed"] and result["hint"] == vllm_smoke.HINT_TOOL_FLAGS


def test_reasoning_left_in_content_points_at_the_reasoning_parser():
    body = fixture("reasoning_missing.json")
    message = body["choices"][0]["message"]
    message["content"] = "300 km in 5 h.</think>" + message["content"]
    result = vllm_smoke.validate_completion("reasoning", 200, body)
    assert not result["passed"] and result["hint"] == vllm_smoke.HINT_REASONING_PARSER


@pytest.mark.parametrize("version, legacy", [("0.33.0", True), ("0.16.0rc1", True), ("0.15.1", False), (None, False)])
def test_reasoning_content_from_a_server_that_reports_vllm_0_16_or_later_is_called_the_old_field(version, legacy):
    result = vllm_smoke.validate("reasoning", 200, fixture("reasoning_content_old.json"), KEYED, version)
    assert result["passed"] and "reasoning_content of" in result["detail"]
    if legacy:
        assert result["warning"] == vllm_smoke.legacy_field_warning(version)
        assert f"reports vLLM {version}" in result["warning"] and "the old field" in result["warning"]
    else:
        assert "warning" not in result
    # A server that sends `reasoning` gets no such note, whatever it reports.
    assert "warning" not in vllm_smoke.validate("reasoning", 200, fixture("reasoning_ok.json"), KEYED, version)


def test_reasoning_cut_at_max_tokens_says_so():
    body = fixture("reasoning_ok.json")
    body["choices"][0].update(finish_reason="length")
    body["choices"][0]["message"]["content"] = None
    result = vllm_smoke.validate_completion("reasoning", 200, body)
    assert not result["passed"]
    assert "content null, finish_reason 'length'" in result["detail"]
    assert result["hint"] == vllm_smoke.HINT_LENGTH


def test_without_a_key_the_auth_check_says_whether_the_endpoint_is_open():
    open_endpoint = vllm_smoke.validate("auth", 200, fixture("models_list.json"), OPEN)
    assert open_endpoint["passed"] and "the endpoint is open" in open_endpoint["detail"]
    assert open_endpoint["warning"] == vllm_smoke.WARNING_OPEN
    line = vllm_smoke.summary_line({**open_endpoint, "latency_s": 0.01})
    assert line.startswith("WARN auth: 200 without a key: the endpoint is open") and line.endswith(
        vllm_smoke.WARNING_OPEN
    )
    guarded = vllm_smoke.validate("auth", 401, fixture("error_unauthorized_401.json"), OPEN)
    assert guarded["passed"] and "warning" not in guarded
    assert vllm_smoke.summary_line({**guarded, "latency_s": 0.01}).startswith("PASS auth: 401")


def test_auth_401_from_something_else_than_vllm_fails():
    result = vllm_smoke.validate_auth(401, "<html><body>401 Authorization Required</body></html>")
    assert not result["passed"] and result["hint"] == vllm_smoke.HINT_PROXY_AUTH
    assert "401 Authorization Required" in result["detail"]


def test_answers_that_are_not_vllm_are_named():
    gateway = vllm_smoke.validate_completion("chat", 502, "<html><center><h1>502 Bad Gateway</h1></center></html>")
    assert not gateway["passed"] and '502 "<html><center><h1>502 Bad Gateway' in gateway["detail"]
    assert gateway["hint"] == vllm_smoke.HINT_ENGINE
    page = vllm_smoke.validate_completion("chat", 200, "<html>It works!</html>")
    assert not page["passed"] and page["hint"] == vllm_smoke.HINT_NOT_VLLM
    empty = vllm_smoke.validate_models(404, "", MODEL)
    assert "404 with an empty body" in empty["detail"] and empty["hint"] == vllm_smoke.HINT_WRONG_PATH
    other_model = vllm_smoke.validate_models(200, fixture("models_list.json"), "deepseek-ai/DeepSeek-V3.1")
    assert not other_model["passed"] and other_model["hint"].endswith("(served: deepseek-ai/DeepSeek-V3.2)")


@pytest.mark.parametrize(
    "answer",
    [
        "60 km/h",
        "60km/h",
        "60 kilometers per hour",
        "60 kilometres per hour",
        "**60 km/h**",
        "The average speed is 60 km/hr.",
        "60 KM/H",
        "60.0 km/h",
        "60 kph",
        "60 km / h",
        "$60 \\text{ km/h}$",
        "\\boxed{60\\,\\text{km/h}}",
        "60\u00a0km/h",
        "60 kmph",
        "60 kilometres an hour",
        "$60\\,\\text{km}\\cdot\\text{h}^{-1}$",
        "60 km·h⁻¹",
    ],
)
def test_accepted_spellings_of_the_answer(answer):
    assert vllm_smoke.answer_has_expected_speed(answer)


@pytest.mark.parametrize(
    "answer",
    [
        "160 km/h",
        "6.60 km/h",
        "60 miles per hour",
        "60 mph",
        "60",
        "about 50 km/h",
        "600 km/h",
        "60 km",
        "1,060 km/h",
        # The final answer counts, not a mention of 60 km/h on the way.
        "Not 60 km/h; the answer is 50 km/h.",
        "Each leg runs at 60 km/h, so the average speed is **72 km/h**.",
    ],
)
def test_wrong_answers_do_not_match(answer):
    assert not vllm_smoke.answer_has_expected_speed(answer)


@pytest.mark.parametrize(
    "answer",
    [
        "Averaging the two legs' speeds would be wrong; total distance over total time gives 60 km/h.",
        "The average speed is 60 km/h (about 37.3 mph, or 16.7 m/s).",
        "Not 50 km/h: the average speed is $\\boxed{60\\ \\text{km/h}}$",
    ],
)
def test_the_final_speed_is_judged_whatever_comes_before_or_in_other_units(answer):
    assert vllm_smoke.answer_has_expected_speed(answer)


def test_a_final_answer_other_than_60_names_it():
    body = fixture("reasoning_ok.json")
    body["choices"][0]["message"]["content"] = "Not 60 km/h; the answer is 50 km/h."
    result = vllm_smoke.validate_completion("reasoning", 200, body)
    assert not result["passed"]
    assert "an answer whose final speed is 50 km/h, not 60 km/h" in result["detail"]


# Retry policy -----------------------------------------------------------------------------------------------


def _exchange(status=None, error_kind=None):
    return {"status": status, "body": None, "latency_s": 0.0, "error": error_kind, "error_kind": error_kind}


@pytest.mark.parametrize(
    "exchange, transient",
    [
        (_exchange(error_kind="timeout"), True),
        (_exchange(error_kind="refused"), True),
        (_exchange(error_kind="reset"), True),
        (_exchange(error_kind="tls"), False),
        (_exchange(error_kind="other"), False),
        (_exchange(500), True),
        (_exchange(503), True),
        (_exchange(429), True),
        (_exchange(200), False),
        (_exchange(400), False),
        (_exchange(401), False),
        (_exchange(404), False),
    ],
)
def test_only_transient_failures_are_retried(exchange, transient):
    assert vllm_smoke.is_transient(exchange) is transient


def test_retries_stop_at_the_budget_and_at_the_first_real_answer():
    sleeps = []
    answers = iter([_exchange(503), _exchange(error_kind="reset"), _exchange(200), _exchange(200)])
    attempts = vllm_smoke.with_retries(lambda: next(answers), retries=5, retry_delay=2.5, sleep=sleeps.append)
    assert [attempt["status"] for attempt in attempts] == [503, None, 200]
    assert sleeps == [2.5, 2.5]
    always_down = vllm_smoke.with_retries(lambda: _exchange(error_kind="refused"), 2, 0, sleep=sleeps.append)
    assert len(always_down) == 3
    assert len(vllm_smoke.with_retries(lambda: _exchange(503), 0, 0, sleep=sleeps.append)) == 1


# The module end to end --------------------------------------------------------------------------------------


class FakeVllm:
    """A threaded stdlib HTTP server answering like vLLM from the fixtures, on a free loopback port.

    Every check's route plays its scripted answers in order (the last one repeats); an answer is a fixture name
    with a status (a .sse fixture is sent as an event stream), or HANG (accept the request and never answer).
    With an API key it guards /v1 like vLLM's AuthenticationMiddleware. Every request is recorded."""

    HANG = "hang"

    def __init__(self, api_key=None):
        self.api_key = api_key
        self.script = {
            "models": [(200, "models_list.json")],
            "version": [(200, "version.json")],
            "chat": [(200, "chat_ok.json")],
            "tools": [(200, "tools_ok.json")],
            "reasoning": [(200, "reasoning_ok.json")],
            "chat_stream": [(200, "chat_stream_ok.sse")],
            "tools_stream": [(200, "tools_stream_ok.sse")],
            "reasoning_stream": [(200, "reasoning_stream_ok.sse")],
        }
        self.requests = []
        self.release = threading.Event()
        self._lock = threading.Lock()
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                fake.answer(self, None)

            def do_POST(self):
                fake.answer(self, json.loads(self.rfile.read(int(self.headers["Content-Length"]))))

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    @staticmethod
    def route(path, payload):
        if path == "/v1/models":
            return "models"
        if path == "/version":
            return "version"
        if payload.get("tools"):
            route = "tools"
        else:
            route = "reasoning" if payload.get("chat_template_kwargs") else "chat"
        return route + ("_stream" if payload.get("stream") else "")

    def answer(self, handler, payload):
        route = self.route(handler.path, payload)
        with self._lock:
            self.requests.append({"route": route, "headers": dict(handler.headers), "payload": payload})
            answers = self.script[route]
            status, name = answers.pop(0) if len(answers) > 1 else answers[0]
        if self.api_key and handler.headers.get("Authorization") != f"Bearer {self.api_key}":
            status, name = 401, "error_unauthorized_401.json"
        if name == self.HANG:
            self.release.wait(10)  # bounded: the test's teardown releases it
            return
        body = (FIXTURES / name).read_bytes()
        handler.send_response(status)
        handler.send_header("Content-Type", "text/event-stream" if name.endswith(".sse") else "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def routes_seen(self):
        return [request["route"] for request in self.requests]


@pytest.fixture
def fake_vllm():
    servers = []

    def start(api_key=None):
        server = FakeVllm(api_key)
        server.thread.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.release.set()
        server.server.shutdown()
        server.server.server_close()
        server.thread.join(5)


def run_module(check_mode=False, **args):
    """Run vllm_smoke_test.main() in this process, asking for MODEL unless told otherwise; returns (failed,
    result)."""
    return module_runner.run_module("vllm_smoke_test", {"model": MODEL, **args}, check_mode)


def _by_name(result):
    return {check["name"]: check for check in result["results"]}


def test_a_healthy_server_passes_every_default_check(fake_vllm):
    server = fake_vllm()
    failed, result = run_module(base_url=server.url + "/v1/", retry_delay=0)
    assert not failed and result["passed"] and result["changed"] is False
    assert [check["name"] for check in result["results"]] == list(vllm_smoke.CHECKS)
    assert [line.split(":")[0] for line in result["summary"]] == [
        "PASS models",
        "PASS chat",
        "PASS chat_stream",
        "PASS tools",
        "PASS tools_stream",
        "PASS reasoning",
        "PASS reasoning_stream",
        "WARN auth",
    ]
    # No key configured and none needed: the summary says so instead of skipping the auth check.
    assert "the endpoint is open" in result["summary"][-1]
    assert server.routes_seen() == [
        "models",
        "chat",
        "chat_stream",
        "tools",
        "tools_stream",
        "version",
        "reasoning",
        "reasoning_stream",
        "models",
    ]
    assert all("Authorization" not in request["headers"] for request in server.requests)
    assert server.requests[6]["payload"]["chat_template_kwargs"] == {"thinking": True}
    assert server.requests[7]["payload"]["stream_options"] == {"include_usage": True}
    assert [request["headers"]["Accept"] for request in server.requests[1:3]] == [
        "application/json",
        "text/event-stream",
    ]
    reasoning = _by_name(result)["reasoning"]
    assert reasoning["status"] == 200 and len(reasoning["attempts"]) == 1
    assert all("response" not in check for check in result["results"])  # passed: the body is in the report only
    assert "report_path" not in result


def test_api_key_is_sent_everywhere_but_the_auth_check_which_must_get_401(fake_vllm):
    server = fake_vllm(api_key=API_KEY)
    failed, result = run_module(base_url=server.url, api_key=API_KEY, retry_delay=0)
    assert not failed, result["msg"] if failed else None
    assert [check["name"] for check in result["results"]] == list(vllm_smoke.CHECKS)
    keys = {
        request["route"] + ("+key" if "Authorization" in request["headers"] else ""): request
        for request in server.requests
    }
    assert sorted(keys) == [
        "chat+key",
        "chat_stream+key",
        "models",
        "models+key",
        "reasoning+key",
        "reasoning_stream+key",
        "tools+key",
        "tools_stream+key",
        "version+key",
    ]
    assert keys["chat+key"]["headers"]["Authorization"] == f"Bearer {API_KEY}"
    assert _by_name(result)["auth"]["detail"] == '401 {"error": "Unauthorized"} without the key'
    assert API_KEY not in json.dumps(result)


def test_a_wrong_api_key_fails_with_the_key_hint(fake_vllm):
    server = fake_vllm(api_key=API_KEY)
    failed, result = run_module(base_url=server.url, api_key="sk-wrong", checks=["models"], retry_delay=0)
    assert failed and "FAIL models: expected 200" in result["msg"]
    assert _by_name(result)["models"]["hint"] == vllm_smoke.HINT_API_KEY
    assert len(server.requests) == 1  # a 401 is an answer, not a transient failure


def test_a_server_without_a_key_fails_the_auth_check(fake_vllm):
    server = fake_vllm()
    failed, result = run_module(base_url=server.url, api_key=API_KEY, checks=["auth"], retry_delay=0)
    assert failed and _by_name(result)["auth"]["hint"] == vllm_smoke.HINT_NO_AUTH


def test_the_report_is_written_with_results_and_without_the_key(fake_vllm, tmp_path):
    server = fake_vllm(api_key=API_KEY)
    report_path = tmp_path / "reports" / "smoke" / "node1.json"
    failed, result = run_module(base_url=server.url, api_key=API_KEY, report_path=str(report_path), retry_delay=0)
    assert not failed and result["report_path"] == str(report_path)
    text = report_path.read_text()
    report = json.loads(text)
    assert API_KEY not in text
    assert report["passed"] is True and report["api_key_sent"] is True and report["base_url"] == server.url
    assert report["checks"] == list(vllm_smoke.CHECKS)
    assert [check["name"] for check in report["results"]] == report["checks"]
    assert report["summary"] == result["summary"]
    results = _by_name(report)
    assert results["reasoning"]["response"]["choices"][0]["message"]["reasoning"].startswith("The average speed")
    # A stream is reported as what its deltas make, not as its thousands of events.
    streamed = results["reasoning_stream"]["response"]
    assert streamed["message"]["reasoning"].startswith("The average speed") and streamed["done"] is True
    assert streamed["usage"]["completion_tokens"] == 122 and streamed["finish_reason"] == "stop"
    assert [path.name for path in report_path.parent.iterdir()] == ["node1.json"]  # no temporary file left


def test_a_report_that_cannot_be_written_fails_the_task(fake_vllm, tmp_path):
    server = fake_vllm()
    (tmp_path / "reports").write_text("a file where the report directory should be")
    failed, result = run_module(
        base_url=server.url, checks=["models"], report_path=str(tmp_path / "reports" / "n.json")
    )
    assert failed and result["msg"].startswith("could not write the report")
    assert result["passed"] is True  # the checks themselves ran and passed


def test_check_mode_runs_the_read_only_checks_but_writes_no_report(fake_vllm, tmp_path):
    server = fake_vllm()
    report_path = tmp_path / "node1.json"
    failed, result = run_module(check_mode=True, base_url=server.url, report_path=str(report_path), retry_delay=0)
    assert not failed and result["passed"]
    assert len(server.requests) == len(vllm_smoke.CHECKS) + 1  # and /version
    assert not report_path.exists() and "report_path" not in result


def test_a_flaky_503_is_retried_then_passes(fake_vllm):
    server = fake_vllm()
    server.script["chat"] = [(503, "error_retryable_503.json"), (200, "chat_ok.json")]
    failed, result = run_module(base_url=server.url, checks=["chat"], retries=2, retry_delay=0)
    assert not failed
    chat = _by_name(result)["chat"]
    assert [attempt["status"] for attempt in chat["attempts"]] == [503, 200]
    assert server.routes_seen() == ["chat", "chat"]


def test_a_hanging_server_times_out_on_every_attempt(fake_vllm):
    server = fake_vllm()
    server.script["reasoning"] = [(200, FakeVllm.HANG)]
    started = time.monotonic()
    failed, result = run_module(base_url=server.url, checks=["reasoning"], timeout=0.5, retries=1, retry_delay=0)
    elapsed = time.monotonic() - started
    assert failed and 0.9 < elapsed < 4
    reasoning = _by_name(result)["reasoning"]
    assert reasoning["status"] is None and len(reasoning["attempts"]) == 2
    assert all("timed out" in attempt["error"] for attempt in reasoning["attempts"])
    assert "no answer within 0.5 s after 2 attempt(s)" in reasoning["detail"]
    assert reasoning["hint"] == vllm_smoke.TRANSPORT_HINTS["timeout"]
    assert "FAIL reasoning" in result["msg"] and "[2 attempts]" in result["msg"]


def test_a_wrong_answer_is_not_retried(fake_vllm):
    server = fake_vllm()
    server.script["reasoning"] = [(200, "reasoning_wrong_answer.json")]
    failed, result = run_module(base_url=server.url, checks=["reasoning"], retries=3, retry_delay=0)
    assert failed and server.routes_seen() == ["version", "reasoning"]
    assert _by_name(result)["reasoning"]["response"] == fixture("reasoning_wrong_answer.json")
    assert "1 of 1 vLLM smoke checks failed" in result["msg"]
    assert "final speed is 50 km/h, not 60 km/h" in result["msg"]


def test_an_old_reasoning_field_from_a_new_server_is_a_warning(fake_vllm):
    server = fake_vllm()
    server.script["reasoning"] = [(200, "reasoning_content_old.json")]
    failed, result = run_module(base_url=server.url, checks=["reasoning"], retry_delay=0)
    assert not failed and server.routes_seen() == ["version", "reasoning"]
    assert result["summary"][0].startswith("WARN reasoning: 200, reasoning_content of")
    assert _by_name(result)["reasoning"]["warning"] == vllm_smoke.legacy_field_warning("0.33.0")


def test_a_known_vllm_error_fails_the_task_with_its_fix(fake_vllm):
    server = fake_vllm()
    server.script["tools"] = [(400, "error_tool_choice_400.json")]
    failed, result = run_module(base_url=server.url, retry_delay=0)
    assert failed and not result["passed"]
    assert [line.split(":")[0] for line in result["summary"]] == [
        "PASS models",
        "PASS chat",
        "PASS chat_stream",
        "FAIL tools",
        "PASS tools_stream",
        "PASS reasoning",
        "PASS reasoning_stream",
        "WARN auth",
    ]
    assert "Likely fix: " + vllm_smoke.HINT_TOOL_FLAGS in result["msg"]


def test_nothing_listening_fails_models_and_skips_the_rest():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    failed, result = run_module(base_url=f"http://127.0.0.1:{port}", retries=1, retry_delay=0)
    assert failed
    models, *others = result["results"]
    assert len(models["attempts"]) == 2 and "ConnectionRefusedError" in models["attempts"][0]["error"]
    assert models["hint"] == vllm_smoke.TRANSPORT_HINTS["refused"]
    assert [(check["name"], check.get("skipped")) for check in others] == [
        (name, True) for name in vllm_smoke.CHECKS[1:]
    ]


@pytest.mark.parametrize(
    "args, message",
    [
        ({"checks": []}, "checks is empty"),
        ({"timeout": 0}, "timeout must be more than 0 seconds"),
        ({"retries": -1}, "retries must be 0 or more"),
    ],
)
def test_bad_options_are_refused_before_any_request(args, message):
    failed, result = run_module(base_url="http://127.0.0.1:9", **args)
    assert failed and result["msg"].startswith(message)


def test_ansible_runs_the_module_with_its_module_utils_in_check_mode(fake_vllm, tmp_path):
    ansible = shutil.which("ansible", path=os.path.dirname(sys.executable))
    if ansible is None:
        pytest.skip("the ansible command is not installed next to this Python")
    server = fake_vllm(api_key=API_KEY)
    args = {
        "base_url": server.url,
        "model": MODEL,
        "api_key": API_KEY,
        "checks": ["models", "auth"],
        "retry_delay": 0,
        "report_path": str(tmp_path / "report.json"),
    }
    environment = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
        "ANSIBLE_STDOUT_CALLBACK": "json",
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-local"),
        "ANSIBLE_HOME": str(tmp_path / "ansible-home"),
    }
    completed = subprocess.run(
        [
            ansible,
            "localhost",
            "-i",
            "localhost,",
            "-c",
            "local",
            "--check",
            "-m",
            "vllm_smoke_test",
            "-a",
            json.dumps(args),
            "-e",
            f"ansible_python_interpreter={sys.executable}",
        ],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    task = json.loads(completed.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]
    assert task["passed"] is True and task["changed"] is False
    assert [check["name"] for check in task["results"]] == ["models", "auth"]
    assert server.requests[0]["headers"]["Authorization"] == f"Bearer {API_KEY}"
    assert API_KEY not in completed.stdout
    assert not (tmp_path / "report.json").exists()


# Against the vLLM stand-in ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def standin_helpers():
    """The stand-in's own test helpers: its node layout (GPU device nodes, an offline HF cache) and Server."""
    return standin_tests


def test_every_check_passes_against_the_vllm_standin(standin_helpers, tmp_path):
    helpers = standin_helpers
    helpers.make_hf_cache(tmp_path / "hf")
    env = helpers.container_env(tmp_path)
    with helpers.Server(env, tmp_path, *helpers.FULL_FEATURES, "--api-key", API_KEY) as server:
        failed, result = run_module(base_url=server.url, api_key=API_KEY, timeout=30, retry_delay=0)
    assert not failed, result["msg"] if failed else None
    assert [line.split(":")[0] for line in result["summary"]] == [f"PASS {name}" for name in vllm_smoke.CHECKS]
    checks = _by_name(result)
    assert 'get_weather({"location": "San Francisco"}), finish_reason tool_calls' in checks["tools_stream"]["detail"]
    assert "reasoning of" in checks["reasoning_stream"]["detail"] and "[DONE]" in checks["reasoning_stream"]["detail"]


def test_a_standin_without_a_key_is_reported_open(standin_helpers, tmp_path):
    helpers = standin_helpers
    helpers.make_hf_cache(tmp_path / "hf")
    with helpers.Server(helpers.container_env(tmp_path), tmp_path, *helpers.FULL_FEATURES) as server:
        failed, result = run_module(base_url=server.url, checks=["models", "auth"], timeout=30, retry_delay=0)
    assert not failed and result["summary"][1].startswith("WARN auth: 200 without a key: the endpoint is open")
