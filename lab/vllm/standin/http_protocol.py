"""HTTP/1.1 as uvicorn serves it: keep-alive (VLLM_HTTP_TIMEOUT_KEEP_ALIVE), chunked streaming, "100 Continue",
`date`/`server: uvicorn` headers and the access log line on stdout; responses and vLLM's error bodies."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus

MAX_HEAD_BYTES = 64 * 1024
JSON_DUMPS = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


class HttpError(Exception):
    pass


@dataclass
class HttpRequest:
    method: str
    path: str
    version: str
    headers: dict[str, str]
    body: bytes

    @property
    def keep_alive(self) -> bool:
        connection = self.headers.get("connection", "").lower()
        return "close" not in connection and (self.version == "HTTP/1.1" or "keep-alive" in connection)


async def read_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> HttpRequest | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    except asyncio.LimitOverrunError:
        raise HttpError("request head too large") from None
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise HttpError("invalid request line")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            key = name.strip().lower()
            headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    request = HttpRequest(method=parts[0], path=parts[1], version=parts[2], headers=headers, body=b"")
    chunked = "chunked" in headers.get("transfer-encoding", "").lower()
    length = int(headers.get("content-length", "0") or 0)
    if (chunked or length) and headers.get("expect", "").lower() == "100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    try:
        if chunked:
            body = bytearray()
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
                if size == 0:
                    while (await reader.readuntil(b"\r\n")) != b"\r\n":
                        pass
                    break
                body += await reader.readexactly(size)
                await reader.readexactly(2)
            request.body = bytes(body)
        elif length:
            request.body = await reader.readexactly(length)
    except (asyncio.IncompleteReadError, ValueError):
        return None
    return request


def response_head(status: int, headers: list[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}", f"date: {formatdate(usegmt=True)}",
             "server: uvicorn", *(f"{name}: {value}" for name, value in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def json(cls, status: int, payload) -> Response:
        return cls(status, JSON_DUMPS(payload).encode("utf-8"), "application/json")


def error_response(message: str, err_type: str = "BadRequestError", status: int = 400,
                   param: str | None = None) -> Response:
    """vLLM's ErrorResponse (entrypoints/serve/engine/protocol.py, serve/exception_handling/error_response.py)."""
    return Response.json(status, {"error": {"message": message, "type": err_type, "param": param, "code": status}})


def summarize_input(value) -> str:
    """serve/exception_handling/handlers/validation.py _summarize_error_input."""
    if isinstance(value, str):
        return value if len(value) <= 200 else value[:200] + "...[truncated]"
    if isinstance(value, (list, tuple, dict)):
        return f"<{type(value).__name__} of {len(value)} items>"
    return str(value)


def validation_error(errors: list[dict | str]) -> Response:
    """FastAPI's RequestValidationError as vLLM's handler words it: "N validation error(s):" then one line per
    error, type "Bad Request", `param` from the first error's location."""
    rendered, param = [], None
    for error in errors[:10]:
        if isinstance(error, dict):
            error = dict(error)
            error["loc"] = ".".join(str(part) for part in error["loc"])
            error["input"] = summarize_input(error["input"])
            param = param or error["loc"]
        rendered.append(f"  {error}")
    label = "error" if len(errors) == 1 else "errors"
    message = f"{len(errors)} validation {label}:\n" + "\n".join(rendered)
    return error_response(message, "Bad Request", 400, param)


def response_summary(response: Response) -> str:
    error = json.loads(response.body)["error"]
    return (f"error=ErrorInfo(message={error['message']!r}, type={error['type']!r}, param={error['param']!r}, "
            f"code={error['code']})")
