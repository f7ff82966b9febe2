"""Tool calls: which tool a request's words call, its arguments taken from the request, and DeepSeek V3.2's DSML
markup for them (parser/deepseek_v32.py)."""

from __future__ import annotations

import json
import re

from .text import content_words

DSML = "｜DSML｜"


def tool_words(tool: dict) -> set[str]:
    function = tool.get("function") or {}
    name = re.sub(r"([a-z])([A-Z])", r"\1 \2", str(function.get("name", ""))).replace("_", " ").replace("-", " ")
    return set(content_words(f"{name} {function.get('description', '')}")) - {"get", "set", "fetch", "function"}


def extract_place(text: str) -> str | None:
    match = re.search(r"\b(?:in|for|at|near|to|from|of)\s+((?:[A-Z][\w'.-]*)(?:\s+[A-Z][\w'.-]*)*)", text)
    if match:
        return match.group(1).rstrip(".")
    match = re.search(r"\b(?:in|for|at|near)\s+([a-z][a-z]+(?:\s+[a-z][a-z]+)?)\s*[?.!]?$", text.strip())
    return match.group(1).title() if match else None


def derive_arguments(tool: dict, text: str) -> dict:
    """Arguments the way a model fills them: from the request text, by each parameter's name, type and enum."""
    parameters = (tool.get("function") or {}).get("parameters") or {}
    properties = parameters.get("properties") or {}
    required = set(parameters.get("required") or [])
    numbers = re.findall(r"-?\d+(?:\.\d+)?", text)
    arguments: dict = {}
    for name, schema in properties.items():
        schema = schema if isinstance(schema, dict) else {}
        kind, lowered = schema.get("type", "string"), name.lower()
        value: object = None
        if schema.get("enum"):
            value = next((item for item in schema["enum"] if str(item).lower() in text.lower()),
                         schema["enum"][0] if name in required else None)
        elif kind in ("integer", "number"):
            if numbers:
                value = int(float(numbers[0])) if kind == "integer" else float(numbers[0])
            elif name in required:
                value = 1
        elif kind == "boolean":
            value = True if name in required else None
        elif kind == "string":
            if any(key in lowered for key in ("location", "city", "place", "address", "country", "destination",
                                              "origin", "region", "where")):
                value = extract_place(text) or (text.strip() if name in required else None)
            elif "unit" in lowered:
                value = next((unit for unit in ("celsius", "fahrenheit") if unit in text.lower()), None)
            elif "date" in lowered:
                found = re.search(r"\d{4}-\d{2}-\d{2}", text)
                value = found.group(0) if found else ("today" if name in required else None)
            elif name in required:
                value = text.strip()
        elif name in required:
            value = [] if kind == "array" else {}
        if value is not None:
            arguments[name] = value
    return arguments


def choose_tool(tools: list[dict], tool_choice, text: str) -> dict | None:
    if isinstance(tool_choice, dict):
        wanted = (tool_choice.get("function") or {}).get("name")
        return next((tool for tool in tools if (tool.get("function") or {}).get("name") == wanted), None)
    words = set(content_words(text))
    scored = [(len(words & tool_words(tool)), index) for index, tool in enumerate(tools)]
    best, index = max(scored, default=(0, -1))
    if best > 0 or (tool_choice == "required" and tools):
        return tools[index if best > 0 else 0]
    return None


def dsml_markup(name: str, arguments_json: str) -> str:
    """DeepSeek V3.2's tool-call output (parser/deepseek_v32.py)."""
    params = []
    for key, value in json.loads(arguments_json).items():
        is_string = isinstance(value, str)
        text = value if is_string else json.dumps(value, ensure_ascii=False)
        params.append(f'<{DSML}parameter name="{key}" string="{"true" if is_string else "false"}">{text}'
                      f"</{DSML}parameter>")
    return (f"<{DSML}function_calls>\n<{DSML}invoke name=\"{name}\">\n" + "\n".join(params)
            + f"\n</{DSML}invoke>\n</{DSML}function_calls>")


def streamable_arguments(params: list[tuple[str, object]]) -> str:
    """The arguments JSON vLLM streams once `params` are parsed (ParserEngine._safe_arg_prefix): up to the last
    value, a string value without its closing quote (more text may follow), any other value not yet."""
    if not params:
        return ""
    text, value = json.dumps(dict(params), ensure_ascii=False), params[-1][1]
    return text[:-2] if isinstance(value, str) else text[:-1 - len(json.dumps(value, ensure_ascii=False))]
