"""Request validation in vLLM 0.33's order: pydantic's checks of the body (FastAPI's RequestValidationError,
answered by handlers/validation.py), then the serving code's VLLMValidationErrors (exceptions.py,
handlers/vllm_error.py). Pydantic errors carry `loc` as vLLM's handler cleans it: a union's branch names are left
out."""

from __future__ import annotations

import contextlib
import math
import re

from .http_protocol import HttpRequest, Response, error_response, validation_error

VLLM_MAX_N_SEQUENCES = 16384  # envs.py default
# (field, type, nullable) in the models' field order, which is the order pydantic reports errors in.
CHAT_NUMBERS = (("max_tokens", int, True), ("max_completion_tokens", int, True), ("n", int, True),
                ("temperature", float, True), ("top_p", float, True))
COMPLETION_NUMBERS = (("max_tokens", int, True), ("n", int, False), ("temperature", float, True),
                      ("top_p", float, True))
INTEGER_TEXT = re.compile(r"\s*[+-]?\d+(?:\.0*)?\s*")
FIELD_MESSAGES = {"missing": "Field required", "list_type": "Input should be a valid list",
                  "string_type": "Input should be a valid string"}


def field_error(kind: str, loc: tuple, value) -> dict:
    return {"type": kind, "loc": loc, "msg": FIELD_MESSAGES[kind], "input": value}


def vllm_validation_error(message: str, parameter: str | None = None, value=None) -> Response:
    """A VLLMValidationError as create_error_response answers it: 400 BadRequestError with the parameter as `param`,
    and "(parameter=…, value=…)" appended by the exception's __str__."""
    extras = [f"{name}={item}" for name, item in (("parameter", parameter), ("value", value)) if item is not None]
    return error_response(f"{message} ({', '.join(extras)})" if extras else message, param=parameter)


def lax_int(value, loc: tuple) -> tuple[int | None, dict | None]:
    """Pydantic's lax `int`: bools, integral floats and integer strings convert."""
    if isinstance(value, int):
        return int(value), None
    if isinstance(value, float) and value.is_integer():
        return int(value), None
    if isinstance(value, float) and not math.isfinite(value):
        return None, {"type": "finite_number", "loc": loc, "msg": "Input should be a finite number", "input": value}
    if isinstance(value, float):
        return None, {"type": "int_from_float", "loc": loc,
                      "msg": "Input should be a valid integer, got a number with a fractional part", "input": value}
    if isinstance(value, str) and INTEGER_TEXT.fullmatch(value):
        return int(value.strip().split(".")[0]), None
    if isinstance(value, str):
        return None, {"type": "int_parsing", "loc": loc,
                      "msg": "Input should be a valid integer, unable to parse string as an integer", "input": value}
    return None, {"type": "int_type", "loc": loc, "msg": "Input should be a valid integer", "input": value}


def lax_float(value, loc: tuple) -> tuple[float | None, dict | None]:
    """Pydantic's lax `float`: numbers, bools and numeric strings convert."""
    if isinstance(value, (int, float)):
        return float(value), None
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return float(value), None
        return None, {"type": "float_parsing", "loc": loc,
                      "msg": "Input should be a valid number, unable to parse string as a number", "input": value}
    return None, {"type": "float_type", "loc": loc, "msg": "Input should be a valid number", "input": value}


def number_errors(body: dict, fields: tuple) -> list[dict]:
    """Checks the numeric fields and puts the converted values in the body, as the model hands them on."""
    errors = []
    for name, kind, nullable in fields:
        if name not in body or (body[name] is None and nullable):
            continue
        value, error = (lax_int if kind is int else lax_float)(body[name], ("body", name))
        if error is None:
            body[name] = value
        else:
            errors.append(error)
    return errors


def int_list_errors(values: list, loc: tuple) -> list[dict]:
    errors = []
    for index, item in enumerate(values):
        value, error = lax_int(item, (*loc, index))
        if error is None:
            values[index] = value
        else:
            errors.append(error)
    return errors


def chat_field_errors(body: dict) -> list[dict]:
    """ChatCompletionRequest (chat_completion/protocol.py): `messages` is required and a list (an empty one passes),
    and the numbers the stand-in uses."""
    if "messages" not in body:
        errors = [field_error("missing", ("body", "messages"), body)]
    elif not isinstance(body["messages"], list):
        errors = [field_error("list_type", ("body", "messages"), body["messages"])]
    else:
        errors = []
    return errors + number_errors(body, CHAT_NUMBERS)


def completion_prompt_error(body: dict) -> Response | None:
    """CompletionRequest.validate_prompt_and_prompt_embeds, a "before" validator. Its VLLMValidationError is not a
    pydantic error: it escapes validation, and /invocations' search for a handler, as a 400."""
    if body.get("prompt") in (None, ""):
        return vllm_validation_error("Either prompt or prompt_embeds must be provided and non-empty.", "prompt")
    return None


def prompt_shape_valid(prompt) -> bool:
    """CompletionRequest.prompt: a text, token ids (>= 0), a list of texts or a list of token-id lists."""
    def token_ids(value) -> bool:
        return isinstance(value, list) and all(isinstance(item, int) and item >= 0 for item in value)

    return isinstance(prompt, str) or token_ids(prompt) or isinstance(prompt, list) and (
        all(isinstance(item, str) for item in prompt) or all(token_ids(item) for item in prompt))


def completion_field_errors(body: dict) -> list[dict]:
    """A prompt that is neither a text nor a list fails each branch of the prompt's union; then the numbers."""
    prompt, loc = body.get("prompt"), ("body", "prompt")
    errors = [] if isinstance(prompt, (str, list)) else [
        field_error("list_type", loc, prompt), field_error("list_type", loc, prompt),
        field_error("string_type", loc, prompt), field_error("list_type", loc, prompt)]
    return errors + number_errors(body, COMPLETION_NUMBERS)


def requested_output(body: dict, chat: bool) -> tuple[str, int | None]:
    """The output budget the request names: chat prefers max_completion_tokens; completions default to 16."""
    if chat and body.get("max_completion_tokens") is not None:
        return "max_completion_tokens", body["max_completion_tokens"]
    return "max_tokens", body.get("max_tokens", None if chat else 16)


def tokenize_errors(body: dict) -> list[dict]:
    """TokenizeRequest is a union of two models: each branch's errors, under the model's name in `loc`."""
    errors = []
    for model, field, kind, valid in (("TokenizeCompletionRequest", "prompt", "string_type", str),
                                      ("TokenizeChatRequest", "messages", "list_type", list)):
        loc = ("body", model, field)
        if field not in body:
            errors.append(field_error("missing", loc, body))
        elif not isinstance(body[field], valid):
            errors.append(field_error(kind, loc, body[field]))
    return errors


def detokenize_errors(body: dict) -> list[dict]:
    """DetokenizeRequest.tokens: list[Annotated[int, Field(ge=0, le=2**63 - 1)]]."""
    tokens, loc = body.get("tokens"), ("body", "tokens")
    if "tokens" not in body:
        return [field_error("missing", loc, body)]
    if not isinstance(tokens, list):
        return [field_error("list_type", loc, tokens)]
    errors = []
    for index, item in enumerate(tokens):
        token, error = lax_int(item, (*loc, index))
        if error is None and token < 0:
            error = {"type": "greater_than_equal", "loc": (*loc, index),
                     "msg": "Input should be greater than or equal to 0", "input": item, "ctx": {"ge": 0}}
        elif error is None and token > 2**63 - 1:
            error = {"type": "less_than_equal", "loc": (*loc, index),
                     "msg": f"Input should be less than or equal to {2**63 - 1}", "input": item,
                     "ctx": {"le": 2**63 - 1}}
        if error is None:
            tokens[index] = token
        else:
            errors.append(error)
    return errors


def scoring_errors(body: dict) -> list[dict]:
    """GenerativeScoringRequest (generate/generative_scoring/serving.py): query is str | list[int], items is
    list[str] | list[list[int]], label_token_ids is list[int]; all three are required."""
    errors = []
    query, loc = body.get("query"), ("body", "query")
    if "query" not in body:
        errors.append(field_error("missing", loc, body))
    elif isinstance(query, list) and (element_errors := int_list_errors(query, loc)):
        errors += [field_error("string_type", loc, query), *element_errors]
    elif not isinstance(query, (str, list)):
        errors += [field_error("string_type", loc, query), field_error("list_type", loc, query)]
    items, loc = body.get("items"), ("body", "items")
    if "items" not in body:
        errors.append(field_error("missing", loc, body))
    elif not isinstance(items, list):
        errors += [field_error("list_type", loc, items), field_error("list_type", loc, items)]
    elif not all(isinstance(item, str) for item in items):
        as_ids = [error for index, item in enumerate(items) for error in (
            int_list_errors(item, (*loc, index)) if isinstance(item, list)
            else [field_error("list_type", (*loc, index), item)])]
        if as_ids:
            errors += [field_error("string_type", (*loc, index), item) for index, item in enumerate(items)
                       if not isinstance(item, str)] + as_ids
    labels, loc = body.get("label_token_ids"), ("body", "label_token_ids")
    if "label_token_ids" not in body:
        errors.append(field_error("missing", loc, body))
    elif not isinstance(labels, list):
        errors.append(field_error("list_type", loc, labels))
    else:
        errors += int_list_errors(labels, loc)
    return errors


def unsupported_media_type(request: HttpRequest) -> Response | None:
    """api_utils.py validate_json_request, for routes whose handler reads the body itself."""
    if request.headers.get("content-type", "").lower().split(";", 1)[0] != "application/json":
        return validation_error(["Unsupported Media Type: Only 'application/json' is allowed"])
    return None
