"""Smoke checks of a vLLM server serving DeepSeek V3.2 through its OpenAI-compatible API.

The request builders, the validators and the retry policy are pure, so they can be tested against recorded vLLM
responses; `send` is the only function that talks HTTP. Response shapes and error texts follow vLLM 0.33's
sources (vllm/entrypoints/openai, vllm/entrypoints/serve, vllm/renderers).

Each validator takes (status, parsed body) and returns {name, passed, detail, hint?, warning?}: `detail` says
what was expected and what came back, `hint` names the likely fix when the failure is a known one, `warning`
what an operator should know about a check that passed.
"""

from __future__ import annotations

import functools
import json
import re
import ssl
import time
import typing as t
import urllib.error
from http.client import HTTPException

from ansible.module_utils.urls import ConnectionError as UrlConnectionError
from ansible.module_utils.urls import SSLValidationError, open_url

# Every check, in the order they run by default. auth runs with or without a configured key: without one it
# reports whether the endpoint is open.
CHECKS = ("models", "chat", "chat_stream", "tools", "tools_stream", "reasoning", "reasoning_stream", "auth")
# Streamed checks and their non-streamed twins: the same request with stream and stream_options.include_usage,
# because vLLM parses tool calls and reasoning of a stream delta by delta, in other code than a whole answer.
STREAMED = {"chat_stream": "chat", "tools_stream": "tools", "reasoning_stream": "reasoning"}
# Checks that read the release the server reports (GET /version), asked once per run.
NEEDS_VERSION = ("reasoning", "reasoning_stream")
# vLLM 0.16 renamed the message's reasoning_content to reasoning.
REASONING_RENAMED_IN = (0, 16)

# The vendor guide's three requests ("Test Endpoints").
CHAT_PROMPT = "Hello, who are you?"
WEATHER_PROMPT = "What is the weather in San Francisco?"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get weather for a location",
        "parameters": {
            "type": "object",
            "properties": {"location": {"type": "string"}},
            "required": ["location"],
        },
    },
}
TRAIN_PROMPT = (
    "Solve step by step: If a train travels 120km in 2 hours, and then 180km in 3 hours, what is the average speed?"
)
# Caps on generated tokens, far above what these prompts need, so a runaway generation ends on its own instead
# of holding the request until the client's timeout (vLLM also clamps them to the context left).
MAX_TOKENS = {"chat": 512, "tools": 512, "reasoning": 4096}

# The train question's answer is (120 + 180) km / (2 + 3) h = 60 km/h, and the answer is judged by its final
# speed: the last number with a km/h unit it states, so "not 60 km/h; the answer is 50 km/h" fails. Spellings,
# after removing Markdown and LaTeX markup (`**60 km/h**`, `$60 \text{ km/h}$`, `\boxed{60\,\text{km/h}}`): the
# number (60 or 60.0), optional spaces, then km/h, km / h, km/hr, km/hour, kmh, kmph, kph, km per hour,
# kilometers (kilometres) per hour or an hour, or km h^-1 / km·h⁻¹; case-insensitive. Speeds in other units
# (a conversion after the answer) do not count; 160 km/h, 6.60 km/h or 60 mph are not 60 km/h.
_MARKUP = re.compile(r"\\(?:text|mathrm|textbf|mathbf|operatorname|cdot)|\\[ ,;:!]|[{}$*_]")
_SPEED = re.compile(
    r"(?<![\d.,])(\d+(?:\.\d+)?)\s*"
    r"(?:(?:km\s*/\s*h(?:r|our)?|kmp?h|kph|km\s+per\s+hour|kilomet(?:er|re)s?\s*(?:per|an|/)\s*hour)\b"
    r"|km\s*[·⋅]?\s*h\s*(?:⁻¹|\^\s*-1))",
    re.IGNORECASE,
)

# The weather question's location: San Francisco, optionally followed by more ("San Francisco, CA").
_SAN_FRANCISCO = re.compile(r"san\s+francisco\b", re.IGNORECASE)

HINT_TOOL_FLAGS = (
    "start vLLM with --enable-auto-tool-choice --tool-call-parser deepseek_v32 "
    "(vllm_service_enable_auto_tool_choice, vllm_service_tool_call_parser)"
)
HINT_TOOLS_IGNORED = HINT_TOOL_FLAGS + ", and --tokenizer-mode deepseek_v32, which puts the tools into the prompt"
HINT_TOOL_PARSER = (
    "start vLLM with --tool-call-parser deepseek_v32 (vllm_service_tool_call_parser): the parsers of other "
    "DeepSeek versions do not understand V3.2's DSML tool calls"
)
HINT_TOKENIZER_MODE = (
    "start vLLM with --tokenizer-mode deepseek_v32 (vllm_service_tokenizer_mode): DeepSeek V3.2 ships no chat "
    "template, its prompt encoder is that tokenizer mode"
)
HINT_REASONING_PARSER = (
    "start vLLM with --reasoning-parser deepseek_v3 (vllm_service_reasoning_parser): without it the thinking "
    "stays inside content"
)
HINT_REASONING_OFF = (
    'thinking is off or unparsed: the request must send chat_template_kwargs {"thinking": true} (this check '
    "does) and vLLM needs --reasoning-parser deepseek_v3 (vllm_service_reasoning_parser)"
)
HINT_API_KEY = (
    "the server wants an API key: set api_key to the service's --api-key (vllm_service_api_key); "
    "if a key was sent, it is not the service's"
)
HINT_NO_AUTH = (
    "the API answers without a key: the service runs without --api-key / VLLM_API_KEY "
    "(set vllm_service_api_key and restart it)"
)
WARNING_OPEN = (
    "anyone who reaches base_url can use the model: set vllm_service_api_key (vLLM's --api-key) if that is not "
    "intended"
)
HINT_PROXY_AUTH = 'something in front of vLLM answered; vLLM itself answers 401 with {"error": "Unauthorized"}'
HINT_MODEL_NAME = (
    "set model to a name the server serves, or change --served-model-name (vllm_service_served_model_name)"
)
HINT_WRONG_PATH = "base_url must be the server's root (http://<host>:<port>), not a path under it"
HINT_NOT_VLLM = "base_url does not answer like vLLM's OpenAI API: check it points at the service, not at another server"
HINT_ENGINE = "the engine failed: read the service's journal and GET /health (503 there means the engine died)"
HINT_BUSY = "the server or a proxy in front of it is overloaded: retry later, or raise retries and retry_delay"
HINT_LENGTH = "the generation stopped at max_tokens before the answer: the model rambled, run the check again"
HINT_EMPTY_ANSWER = "an empty answer usually means a mis-rendered prompt: " + HINT_TOKENIZER_MODE
HINT_NOT_STREAMED = (
    "vLLM answers stream: true with text/event-stream: something in front of it (a proxy or gateway) does not "
    "pass streams through"
)
HINT_STREAM_CHANGED = "vLLM's streams have this: something in front of vLLM (a proxy or gateway) rewrites the stream"
HINT_STREAM_CUT = (
    "the stream stopped before its end: an engine crash or a proxy's read or idle timeout; read the service's "
    "journal and any load balancer's timeouts"
)

# Known vLLM error messages (status, pattern on error.message, hint), tried in order.
KNOWN_ERRORS = (
    (400, re.compile(r'"auto" tool choice requires'), HINT_TOOL_FLAGS),
    (400, re.compile(r"tool_choice=.* requires --tool-call-parser"), HINT_TOOL_PARSER),
    (400, re.compile(r"chat template", re.IGNORECASE), HINT_TOKENIZER_MODE),
    (404, re.compile(r"The model `.*` does not exist"), HINT_MODEL_NAME),
)

# Transport failures worth another attempt; DNS and TLS failures are configuration and are not retried.
TRANSIENT_ERROR_KINDS = ("timeout", "refused", "reset")
TRANSPORT_HINTS = {
    "refused": (
        "nothing accepts connections at base_url: check the service runs and its port is reachable from the "
        "controller (vLLM opens the port only once the model is loaded)"
    ),
    "timeout": (
        "no answer within the timeout: raise timeout (a 685B model's reasoning can take minutes under load) "
        "or check the engine's load"
    ),
    "reset": (
        "the connection was dropped: an engine crash or a proxy's idle timeout; read the service's journal "
        "and any load balancer's timeouts"
    ),
    "tls": "TLS verification failed: trust the server's CA on the controller, or set validate_certs false",
    "other": "the request could not be sent: check base_url (scheme, host name, port)",
}

_EXCERPT_CHARS = 160
_REPORT_STRING_CHARS = 2000


class SmokeRequest(t.NamedTuple):
    """One check's HTTP request; `send_key` is false for the request that must be refused."""

    method: str
    path: str
    payload: dict | None = None
    send_key: bool = True


class SmokeSettings(t.NamedTuple):
    """What every check needs: where, which model, the key, and the per-request budget."""

    base_url: str
    model: str
    api_key: str | None = None
    timeout: float = 300.0
    retries: int = 3
    retry_delay: float = 10.0
    validate_certs: bool = True


# Request builders ------------------------------------------------------------------------------------------


def _chat_payload(model: str, prompt: str, max_tokens: int) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens}


def models_request(model: str) -> SmokeRequest:
    return SmokeRequest("GET", "/v1/models")


def chat_request(model: str) -> SmokeRequest:
    return SmokeRequest("POST", "/v1/chat/completions", _chat_payload(model, CHAT_PROMPT, MAX_TOKENS["chat"]))


def tools_request(model: str) -> SmokeRequest:
    # No tool_choice, like the guide: vLLM turns tools without tool_choice into "auto".
    payload = _chat_payload(model, WEATHER_PROMPT, MAX_TOKENS["tools"])
    payload["tools"] = [WEATHER_TOOL]
    return SmokeRequest("POST", "/v1/chat/completions", payload)


def reasoning_request(model: str) -> SmokeRequest:
    # DeepSeek V3.2 thinks only when asked; the guide's request omits this and cannot show reasoning.
    payload = _chat_payload(model, TRAIN_PROMPT, MAX_TOKENS["reasoning"])
    payload["chat_template_kwargs"] = {"thinking": True}
    return SmokeRequest("POST", "/v1/chat/completions", payload)


def auth_request(model: str) -> SmokeRequest:
    return SmokeRequest("GET", "/v1/models", send_key=False)


def streamed(request: SmokeRequest) -> SmokeRequest:
    """The same chat request streamed, asking for the usage chunk at the end."""
    return request._replace(payload={**request.payload, "stream": True, "stream_options": {"include_usage": True}})


BUILDERS = {
    "models": models_request,
    "chat": chat_request,
    "chat_stream": lambda model: streamed(chat_request(model)),
    "tools": tools_request,
    "tools_stream": lambda model: streamed(tools_request(model)),
    "reasoning": reasoning_request,
    "reasoning_stream": lambda model: streamed(reasoning_request(model)),
    "auth": auth_request,
}


# Reading vLLM's answers ------------------------------------------------------------------------------------


def excerpt(text: str, limit: int = _EXCERPT_CHARS, tail: bool = False) -> str:
    """A quoted one-line excerpt; `tail` keeps the end (where an answer's conclusion is)."""
    if len(text) > limit:
        text = "..." + text[-limit:] if tail else text[:limit] + "..."
    return json.dumps(text, ensure_ascii=False)


def _body_text(body: t.Any) -> str:
    return body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)


def body_excerpt(body: t.Any) -> str:
    """Text bodies quoted, JSON bodies as compact JSON; both cut to one short line."""
    if isinstance(body, str):
        return excerpt(body)
    text = _body_text(body)
    return text if len(text) <= _EXCERPT_CHARS else text[:_EXCERPT_CHARS] + "..."


def error_message(body: t.Any) -> str:
    """error.message of vLLM's {"error": {message, type, param, code}}, the auth middleware's {"error": "..."},
    or the text of whatever else came back."""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return str(error.get("message", ""))
        if isinstance(error, str):
            return error
        if "detail" in body:
            return str(body["detail"])
    return _body_text(body) if body not in (None, "") else ""


def error_summary(status: int, body: t.Any) -> str:
    """`400 BadRequestError: <message>` for vLLM's error bodies, else the status and the start of the body."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        return f"{status} {error.get('type', 'error')}: {excerpt(str(error.get('message', '')), 300)}"
    if body in (None, ""):
        return f"{status} with an empty body"
    return f"{status} {body_excerpt(body)}"


def known_error_hint(status: int, body: t.Any) -> str | None:
    """The likely fix for a non-200 answer, from vLLM's known error messages and then from the status."""
    message = error_message(body)
    for known_status, pattern, hint in KNOWN_ERRORS:
        if status == known_status and pattern.search(message):
            aliases = re.search(r"Valid aliases: (.+?)\.?$", message)
            return f"{hint} (served: {aliases.group(1)})" if aliases else hint
    if status == 401:
        return HINT_API_KEY
    if status == 404:
        return HINT_WRONG_PATH
    if status == 429:
        return HINT_BUSY
    if status >= 500:
        return HINT_ENGINE
    return None


def final_speed(content: str) -> float | None:
    """The last speed in km/h the answer states (see _SPEED), None when it states none."""
    speeds = _SPEED.findall(_MARKUP.sub(" ", content))
    return float(speeds[-1]) if speeds else None


def answer_has_expected_speed(content: str) -> bool:
    """True when the answer's final speed is 60 km/h."""
    return final_speed(content) == 60


def _result(name: str, passed: bool, detail: str, hint: str | None = None, warning: str | None = None) -> dict:
    result = {"name": name, "passed": passed, "detail": detail}
    if hint and not passed:
        result["hint"] = hint
    if warning and passed:
        result["warning"] = warning
    return result


def _failed(name: str, expected: str, got: t.Sequence[str], hint: str | None = None) -> dict:
    return _result(name, False, f"expected {expected}; got {'; '.join(got)}", hint)


def _http_failure(name: str, expected: str, status: int, body: t.Any) -> dict:
    return _failed(name, expected, [error_summary(status, body)], known_error_hint(status, body))


def _first_message(body: t.Any) -> tuple[dict, dict] | None:
    """(choices[0], choices[0].message) of a chat completion, None when the body is not one."""
    if not isinstance(body, dict) or not isinstance(body.get("choices"), list) or not body["choices"]:
        return None
    choice = body["choices"][0]
    if not isinstance(choice, dict) or not isinstance(choice.get("message"), dict):
        return None
    return choice, choice["message"]


def _not_a_completion(name: str, expected: str, body: t.Any) -> dict:
    return _failed(name, expected, [f"200 without choices[0].message: {body_excerpt(body)}"], HINT_NOT_VLLM)


def _describe_content(content: t.Any) -> str:
    if content is None:
        return "content null"
    if not isinstance(content, str):
        return f"content of type {type(content).__name__}"
    return f"content {excerpt(content)}"


def _has_text(value: t.Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


# Validators ------------------------------------------------------------------------------------------------


def validate_models(status: int, body: t.Any, model: str) -> dict:
    expected = f"200 with a model list that contains {model!r}"
    if status != 200:
        return _http_failure("models", expected, status, body)
    cards = body.get("data") if isinstance(body, dict) else None
    if not isinstance(cards, list):
        return _failed("models", expected, [f"200 without a data list: {body_excerpt(body)}"], HINT_NOT_VLLM)
    served = {card.get("id"): card for card in cards if isinstance(card, dict)}
    if model not in served:
        names = ", ".join(str(name) for name in served) or "none"
        return _failed("models", expected, [f"200 serving {names}"], f"{HINT_MODEL_NAME} (served: {names})")
    context = served[model].get("max_model_len")
    return _result("models", True, f"200, serves {model}" + (f" (max_model_len {context})" if context else ""))


class Judgement(t.NamedTuple):
    """What an answer's message shows, streamed or not: no problems means it passed, with `detail`."""

    problems: list[str]
    hints: list[str]
    detail: str = ""
    warning: str | None = None


def judge_chat(message: dict, finish_reason: t.Any, version: str | None = None) -> Judgement:
    content = message.get("content")
    problems = []
    if not _has_text(content):
        problems.append(_describe_content(content))
    if finish_reason not in ("stop", "length"):
        problems.append(f"finish_reason {finish_reason!r}")
    if problems:
        return Judgement(problems, [HINT_EMPTY_ANSWER] if not _has_text(content) else [])
    return Judgement([], [], f"finish_reason {finish_reason}, content {excerpt(content, 80)}")


def _tool_call_problem(call: dict) -> tuple[str | None, str | None]:
    """(problem, hint) of a get_weather call's arguments, (None, None) when they are right."""
    arguments = call["function"].get("arguments")
    if not isinstance(arguments, str):
        return (
            f"function.arguments of type {type(arguments).__name__}, not a JSON string",
            "the OpenAI API sends arguments as a JSON string: something between vLLM and the client re-encoded them",
        )
    try:
        parsed = json.loads(arguments)
    except ValueError:
        return f"function.arguments that is not JSON: {excerpt(arguments)}", HINT_TOOL_PARSER
    if not isinstance(parsed, dict):
        return f"function.arguments that is JSON but not an object: {excerpt(arguments)}", HINT_TOOL_PARSER
    if "location" not in parsed:
        return f'function.arguments without "location": {excerpt(arguments)}', None
    location = parsed["location"]
    if not isinstance(location, str) or not _SAN_FRANCISCO.match(location.strip()):
        return f'"location" {json.dumps(location, ensure_ascii=False)} does not name San Francisco', None
    return None, None


def judge_tools(message: dict, finish_reason: t.Any, version: str | None = None) -> Judgement:
    calls = [call for call in message.get("tool_calls") or [] if isinstance(call, dict)]
    weather_calls = [
        call
        for call in calls
        if call.get("type") == "function"
        and isinstance(call.get("function"), dict)
        and call["function"].get("name") == "get_weather"
    ]
    if not weather_calls:
        if calls:
            names = [str((call.get("function") or {}).get("name")) for call in calls]
            return Judgement([f"tool calls to {', '.join(names)}"], [HINT_TOKENIZER_MODE])
        content = message.get("content")
        # Raw DSML markup in content: the model called the tool and the server did not parse the call.
        raw_call = isinstance(content, str) and ("DSML" in content or "function_calls" in content)
        return Judgement(
            ["no tool_calls", _describe_content(content), f"finish_reason {finish_reason!r}"],
            [HINT_TOOL_FLAGS if raw_call else HINT_TOOLS_IGNORED],
        )
    problem, hint = _tool_call_problem(weather_calls[0])
    problems = [problem] if problem else []
    if finish_reason != "tool_calls":
        problems.append(f"finish_reason {finish_reason!r}")
        hint = hint or (HINT_LENGTH if finish_reason == "length" else None)
    if problems:
        return Judgement(problems, [hint] if hint else [])
    return Judgement([], [], f"get_weather({weather_calls[0]['function']['arguments']}), finish_reason tool_calls")


def _wrong_answer(content: str) -> str:
    speed = final_speed(content)
    said = f"whose final speed is {speed:g} km/h, not 60 km/h" if speed is not None else "that states no speed in km/h"
    return f"an answer {said}: {excerpt(content, tail=True)}"


def _release(version: str | None) -> tuple[int, int] | None:
    match = re.match(r"v?(\d+)\.(\d+)", version or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


def legacy_field_warning(version: str | None) -> str | None:
    """What to say about reasoning in reasoning_content from a server that reports `version`; None when that is
    the field of its release or the release is unknown."""
    release = _release(version)
    if release is None or release < REASONING_RENAMED_IN:
        return None
    return (
        f"reasoning_content is the old field (vLLM < 0.16); the server reports vLLM {version}, which sends "
        "reasoning, so clients that read reasoning get none: something in front of vLLM renames it"
    )


def judge_reasoning(message: dict, finish_reason: t.Any, version: str | None = None) -> Judgement:
    # vLLM >= 0.16 sends `reasoning`; older images sent `reasoning_content`.
    field = "reasoning" if _has_text(message.get("reasoning")) else "reasoning_content"
    reasoning, content = message.get(field), message.get("content")
    problems, hints = [], []
    if not _has_text(reasoning):
        problems.append("no reasoning (message.reasoning and message.reasoning_content are empty)")
        unparsed = isinstance(content, str) and "</think>" in content
        hints.append(HINT_REASONING_PARSER if unparsed else HINT_REASONING_OFF)
    if not _has_text(content):
        problems.append(f"{_describe_content(content)}, finish_reason {finish_reason!r}")
        if finish_reason == "length":
            hints.append(HINT_LENGTH)
    elif not answer_has_expected_speed(content):
        problems.append(_wrong_answer(content))
    if problems:
        return Judgement(problems, hints)
    detail = f"{field} of {len(reasoning)} characters, answer {excerpt(content, 80, tail=True)}"
    return Judgement([], [], detail, legacy_field_warning(version) if field == "reasoning_content" else None)


# What each chat check expects of the answer, and the judge of its message.
EXPECTED = {
    "chat": "a non-empty choices[0].message.content and finish_reason stop or length",
    "tools": (
        "a function tool call get_weather whose arguments are a JSON string of an object with "
        '"location" naming San Francisco, and finish_reason tool_calls'
    ),
    "reasoning": "a non-empty message.reasoning and an answer whose final speed is 60 km/h",
}
JUDGES = {"chat": judge_chat, "tools": judge_tools, "reasoning": judge_reasoning}


def _verdict(name: str, expected: str, judgement: Judgement, detail_prefix: str) -> dict:
    if judgement.problems:
        hint = "; ".join(dict.fromkeys(judgement.hints)) or None
        return _failed(name, expected, judgement.problems, hint)
    return _result(name, True, f"{detail_prefix}, {judgement.detail}", None, judgement.warning)


def validate_completion(name: str, status: int, body: t.Any, version: str | None = None) -> dict:
    """A non-streamed chat check: its judge on choices[0].message."""
    expected = f"200 with {EXPECTED[name]}"
    if status != 200:
        return _http_failure(name, expected, status, body)
    parts = _first_message(body)
    if parts is None:
        return _not_a_completion(name, expected, body)
    choice, message = parts
    return _verdict(name, expected, JUDGES[name](message, choice.get("finish_reason"), version), "200")


def sse_data(text: str) -> list[str]:
    """The data of each server-sent event in `text`, in order; other fields and comments are not data."""
    events, lines = [], []
    # Not splitlines(): it also splits at U+2028 and the like, which JSON strings may hold unescaped.
    for line in text.split("\n"):
        line = line.removesuffix("\r")
        if line.startswith("data:"):
            lines.append(line[len("data:") :].removeprefix(" "))
        elif not line and lines:
            events.append("\n".join(lines))
            lines = []
    if lines:
        events.append("\n".join(lines))
    return events


def _add_tool_call_delta(calls: dict, delta: t.Any, problems: list[str]) -> None:
    """Merge one tool_calls delta into `calls` by index, as OpenAI clients do: the first delta of a call names it
    (id, type, function.name), later ones append to function.arguments."""
    if not isinstance(delta, dict) or not isinstance(delta.get("index"), int):
        problems.append("a tool_calls delta without an index")
        return
    function = delta.get("function") if isinstance(delta.get("function"), dict) else {}
    index = delta["index"]
    if index not in calls:
        named = {"id": delta.get("id"), "type": delta.get("type"), "function.name": function.get("name")}
        missing = [key for key, value in named.items() if not value]
        if missing:
            problems.append(f"tool call {index}'s first delta without {', '.join(missing)}")
        calls[index] = {
            "id": delta.get("id"),
            "type": delta.get("type"),
            "function": {"name": function.get("name"), "arguments": ""},
        }
    if isinstance(function.get("arguments"), str):
        calls[index]["function"]["arguments"] += function["arguments"]


def reassemble(text: str) -> dict:
    """What a client makes of a streamed chat completion: the message built from choice 0's deltas, the
    finish_reason, the usage chunk and whether data: [DONE] ended the stream; `problems` and `hints` name what
    departs from vLLM's streams (vllm/entrypoints/openai/chat_completion/serving.py)."""
    data = sse_data(text)
    message: dict = {"content": ""}
    calls: dict[int, dict] = {}
    stream = {"chunks": 0, "message": message, "finish_reason": None, "usage": None, "done": False}
    problems, hints = [], []
    content_began = reasoning_after_content = False
    for position, event in enumerate(data):
        if event == "[DONE]":
            stream["done"] = position == len(data) - 1
            continue
        try:
            chunk = json.loads(event)
        except ValueError:
            problems.append(f"an event that is not JSON: {excerpt(event)}")
            continue
        if isinstance(chunk, dict) and "error" in chunk:
            # vLLM reports a failure after the stream began as an event of its error body.
            problems.append(f"an error in the stream: {excerpt(error_message(chunk), 300)}")
            hints.append(HINT_ENGINE)
            continue
        if not isinstance(chunk, dict):
            problems.append(f"an event that is not a chunk: {excerpt(event)}")
            continue
        stream["chunks"] += 1
        if isinstance(chunk.get("usage"), dict):
            stream["usage"] = chunk["usage"]
        choices = chunk.get("choices") if isinstance(chunk.get("choices"), list) else []
        choice = next((item for item in choices if isinstance(item, dict) and item.get("index", 0) == 0), None)
        if choice is None:
            continue
        delta = choice.get("delta") if isinstance(choice.get("delta"), dict) else {}
        # Before vLLM 0.16 reasoning deltas were reasoning_content.
        for field in ("reasoning", "reasoning_content"):
            if isinstance(delta.get(field), str):
                message[field] = message.get(field, "") + delta[field]
                reasoning_after_content = reasoning_after_content or (content_began and bool(delta[field].strip()))
        if isinstance(delta.get("content"), str):
            message["content"] += delta["content"]
            content_began = content_began or bool(delta["content"].strip())
        for call in delta.get("tool_calls") or []:
            _add_tool_call_delta(calls, call, problems)
        if choice.get("finish_reason") is not None:
            stream["finish_reason"] = choice["finish_reason"]
    if calls:
        message["tool_calls"] = [calls[index] for index in sorted(calls)]
    if not stream["done"]:
        problems.append("no data: [DONE] at the end")
        hints.append(HINT_STREAM_CUT)
    if reasoning_after_content:
        problems.append("reasoning deltas after the content began")
    if stream["finish_reason"] is None:
        problems.append("no finish_reason in the stream")
    usage = stream["usage"]
    if usage is None:
        problems.append("no usage chunk, though stream_options.include_usage asked for it")
    elif not _usage_adds_up(usage):
        problems.append(f"a usage chunk whose tokens do not add up: {body_excerpt(usage)}")
    # A cut stream or an engine error explains the rest; otherwise something rewrote the stream.
    if problems and not hints:
        hints.append(HINT_STREAM_CHANGED)
    return {**stream, "problems": list(dict.fromkeys(problems)), "hints": hints}


def _usage_adds_up(usage: dict) -> bool:
    counts = [usage.get(key) for key in ("prompt_tokens", "completion_tokens", "total_tokens")]
    if not all(isinstance(count, int) and not isinstance(count, bool) for count in counts):
        return False
    prompt, completion, total = counts
    return completion > 0 and total == prompt + completion


def validate_stream(name: str, status: int, body: t.Any, version: str | None = None) -> dict:
    """A streamed chat check: the stream's own rules, then its twin's judge on the reassembled message."""
    twin = STREAMED[name]
    expected = f"200 with an event stream whose deltas make {EXPECTED[twin]}, with a usage chunk and data: [DONE]"
    if status != 200:
        return _http_failure(name, expected, status, body)
    if not isinstance(body, str):
        got = f"200 with a JSON body instead of an event stream: {body_excerpt(body)}"
        return _failed(name, expected, [got], HINT_NOT_STREAMED)
    stream = reassemble(body)
    judged = JUDGES[twin](stream["message"], stream["finish_reason"], version)
    usage = stream["usage"] or {}
    judgement = Judgement(
        stream["problems"] + judged.problems,
        # A broken stream explains what the answer then lacks better than the answer's own hints.
        stream["hints"] or judged.hints,
        f"{judged.detail}, usage {usage.get('prompt_tokens')}+{usage.get('completion_tokens')} tokens, [DONE]",
        judged.warning,
    )
    return _verdict(name, expected, judgement, f"200, {stream['chunks']} chunks")


def validate_auth(status: int, body: t.Any, key_configured: bool = True) -> dict:
    if not key_configured:
        return _open_endpoint(status, body)
    expected = '401 {"error": "Unauthorized"} for a request without the API key'
    if status == 401 and body == {"error": "Unauthorized"}:
        return _result("auth", True, '401 {"error": "Unauthorized"} without the key')
    if status == 401:
        return _failed("auth", expected, [error_summary(status, body)], HINT_PROXY_AUTH)
    if status == 200:
        return _failed("auth", expected, ["200: the request without a key was served"], HINT_NO_AUTH)
    return _http_failure("auth", expected, status, body)


def _open_endpoint(status: int, body: t.Any) -> dict:
    """auth without a configured key: whether the server answers a request without one."""
    if status == 200:
        return _result(
            "auth", True, "200 without a key: the endpoint is open, and no API key is configured", None, WARNING_OPEN
        )
    if status == 401:
        return _result("auth", True, f"{error_summary(status, body)} without a key: the endpoint is not open")
    return _http_failure("auth", "an answer to a request without a key (none is configured)", status, body)


def validate(name: str, status: int, body: t.Any, settings: SmokeSettings, version: str | None = None) -> dict:
    """The check's validator; models needs the model name it looks for, auth whether a key is configured, the
    reasoning checks the release the server reports (None: unknown)."""
    if name == "models":
        return validate_models(status, body, settings.model)
    if name == "auth":
        return validate_auth(status, body, settings.api_key is not None)
    if name in STREAMED:
        return validate_stream(name, status, body, version)
    return validate_completion(name, status, body, version)


# HTTP and retries ------------------------------------------------------------------------------------------


def _root_cause(error: BaseException) -> BaseException:
    """urllib wraps socket errors in URLError; the wrapped error says what happened."""
    if isinstance(error, urllib.error.URLError) and isinstance(error.reason, BaseException):
        return error.reason
    return error


def _transport_error_kind(error: BaseException) -> str:
    if isinstance(error, TimeoutError) or (isinstance(error, urllib.error.URLError) and "timed out" in str(error)):
        return "timeout"
    if isinstance(error, ConnectionRefusedError):
        return "refused"
    if isinstance(error, (ConnectionResetError, ConnectionAbortedError, BrokenPipeError, HTTPException)):
        return "reset"
    if isinstance(error, (ssl.SSLError, SSLValidationError)) or "CERTIFICATE_VERIFY_FAILED" in str(error):
        return "tls"
    return "other"


def _parse_body(raw: bytes) -> t.Any:
    text = raw.decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


def send(settings: SmokeSettings, request: SmokeRequest) -> dict:
    """One HTTP exchange: {status, body, latency_s, error, error_kind}; status is None when no answer came."""
    headers = {"Accept": "text/event-stream" if (request.payload or {}).get("stream") else "application/json"}
    data = None
    if request.payload is not None:
        data = json.dumps(request.payload).encode()
        headers["Content-Type"] = "application/json"
    if settings.api_key and request.send_key:
        headers["Authorization"] = f"Bearer {settings.api_key}"
    url = settings.base_url.rstrip("/").removesuffix("/v1") + request.path
    exchange = {"status": None, "body": None, "error": None, "error_kind": None}
    started = time.monotonic()
    try:
        try:
            response = open_url(
                url,
                data=data,
                headers=headers,
                method=request.method,
                timeout=settings.timeout,
                validate_certs=settings.validate_certs,
                use_netrc=False,
                http_agent="ansible-vllm-smoke-test",
            )
            exchange["status"], raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            exchange["status"], raw = error.code, error.read()
        exchange["body"] = _parse_body(raw)
    except (OSError, HTTPException, UrlConnectionError) as error:
        # A body that stops half-way is no answer either.
        cause = _root_cause(error)
        exchange.update(status=None, body=None, error=f"{type(cause).__name__}: {cause}")
        exchange["error_kind"] = _transport_error_kind(cause)
    exchange["latency_s"] = round(time.monotonic() - started, 3)
    return exchange


def server_version(settings: SmokeSettings) -> str | None:
    """The release the server reports on GET /version (vLLM's {"version": "0.33.0"}); None when it reports none."""
    exchange = send(settings, SmokeRequest("GET", "/version"))
    body = exchange["body"]
    if exchange["status"] == 200 and isinstance(body, dict) and isinstance(body.get("version"), str):
        return body["version"]
    return None


def is_transient(exchange: dict) -> bool:
    """Worth another attempt: no answer for a transient reason, 429 or 5xx. A wrong answer never is."""
    status = exchange["status"]
    if status is None:
        return exchange["error_kind"] in TRANSIENT_ERROR_KINDS
    return status == 429 or status >= 500


def with_retries(
    send_once: t.Callable[[], dict], retries: int, retry_delay: float, sleep: t.Callable[[float], None] = time.sleep
) -> list[dict]:
    """Every attempt's exchange: the first plus up to `retries` more while the failure is transient."""
    attempts = [send_once()]
    while is_transient(attempts[-1]) and len(attempts) <= retries:
        sleep(retry_delay)
        attempts.append(send_once())
    return attempts


# Running checks --------------------------------------------------------------------------------------------


def _clip(value: t.Any) -> t.Any:
    """The body with long strings (reasoning can be pages) cut, for results and reports."""
    if isinstance(value, str) and len(value) > _REPORT_STRING_CHARS:
        return value[:_REPORT_STRING_CHARS] + f"...[{len(value) - _REPORT_STRING_CHARS} more characters]"
    if isinstance(value, dict):
        return {key: _clip(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_clip(item) for item in value]
    return value


def _reported_body(name: str, exchange: dict) -> t.Any:
    """The body as the report keeps it: a stream's text is thousands of events, so what a client made of it."""
    if name in STREAMED and exchange["status"] == 200 and isinstance(exchange["body"], str):
        return reassemble(exchange["body"])
    return exchange["body"]


def _no_answer_result(name: str, exchange: dict, attempts: int, timeout: float) -> dict:
    if exchange["error_kind"] == "timeout":
        got = f"no answer within {timeout:g} s"
    else:
        got = f"no answer ({exchange['error']})"
    detail = f"expected an HTTP answer; got {got} after {attempts} attempt(s)"
    return _result(name, False, detail, TRANSPORT_HINTS[exchange["error_kind"]])


def run_check(
    name: str,
    settings: SmokeSettings,
    sleep: t.Callable[[float], None] = time.sleep,
    version: str | None = None,
) -> dict:
    """Build, send (with retries) and validate one check; the result also records every attempt. `version` is
    the release the server reports, for the checks in NEEDS_VERSION."""
    request = BUILDERS[name](settings.model)
    attempts = with_retries(lambda: send(settings, request), settings.retries, settings.retry_delay, sleep)
    last = attempts[-1]
    if last["status"] is None:
        result = _no_answer_result(name, last, len(attempts), settings.timeout)
    else:
        result = validate(name, last["status"], last["body"], settings, version)
    result.update(
        request=f"{request.method} {request.path}",
        status=last["status"],
        latency_s=last["latency_s"],
        attempts=[
            {"status": attempt["status"], "latency_s": attempt["latency_s"], "error": attempt["error"]}
            for attempt in attempts
        ],
        response=_clip(_reported_body(name, last)),
    )
    return result


def run_checks(
    names: t.Sequence[str], settings: SmokeSettings, sleep: t.Callable[[float], None] = time.sleep
) -> list[dict]:
    """Run the checks in order; when /v1/models got no answer at all, the others are skipped, not waited for."""
    results = []
    unreachable = False
    version = functools.cache(lambda: server_version(settings))
    for name in names:
        if unreachable:
            skipped = _result(name, False, "skipped: the server did not answer /v1/models")
            results.append({**skipped, "skipped": True, "status": None, "latency_s": None, "attempts": []})
            continue
        result = run_check(name, settings, sleep, version() if name in NEEDS_VERSION else None)
        unreachable = name == "models" and result["status"] is None
        results.append(result)
    return results


def summary_line(result: dict) -> str:
    """PASS/WARN/FAIL, the check, what came back; for a warning also what to know, for a failure the likely fix
    and the number of attempts."""
    if result["passed"] and result.get("warning"):
        return f"WARN {result['name']}: {result['detail']} in {result['latency_s']:.1f} s. {result['warning']}"
    if result["passed"]:
        return f"PASS {result['name']}: {result['detail']} in {result['latency_s']:.1f} s"
    line = f"FAIL {result['name']}: {result['detail']}"
    if len(result.get("attempts", ())) > 1:
        line += f" [{len(result['attempts'])} attempts]"
    if result.get("hint"):
        line += f". Likely fix: {result['hint']}"
    return line
