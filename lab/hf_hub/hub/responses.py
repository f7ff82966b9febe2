"""The request handler's base: answers in the hub's format (status, headers, JSON, errors) and `HubError`."""

from __future__ import annotations

import json
import uuid
from http.server import BaseHTTPRequestHandler

from .state import HubState


class HubError(Exception):
    """An error answer in the hub's format: X-Error-Code / X-Error-Message headers and {"error": ...} body."""

    def __init__(self, status: int, code: str | None, message: str, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


class Answers(BaseHTTPRequestHandler):
    """What every route sends with; the routes (api, storage, control) and the dispatch (handler) build on it."""

    protocol_version = "HTTP/1.1"
    server_version = "hf-hub-standin"
    timeout = 120  # idle keep-alive connections

    # -- plumbing ------------------------------------------------------------------------------------------

    @property
    def hub(self) -> HubState:
        return self.server.hub  # type: ignore[attr-defined]

    def _send_headers(self, status: int, headers: dict) -> None:
        self._status = status
        self.send_response(status)
        self.send_header("X-Request-Id", f"Root={uuid.uuid4()}")
        for name, value in {**self._rate_limit_headers, **headers}.items():
            self.send_header(name, str(value))
        self.end_headers()

    def _send_bytes(self, status: int, payload: bytes, content_type: str, headers: dict | None = None,
                    method: str = "GET") -> None:
        self._send_headers(status, {"Content-Type": content_type, "Content-Length": len(payload), **(headers or {})})
        if method != "HEAD":
            self.wfile.write(payload)
            self._body_bytes += len(payload)

    def _send_json(self, status: int, value: object, headers: dict | None = None, method: str = "GET") -> None:
        self._send_bytes(status, json.dumps(value).encode(), "application/json; charset=utf-8", headers, method)

    def _send_error(self, error: HubError) -> None:
        headers = dict(error.headers)
        if error.code:
            headers["X-Error-Code"] = error.code
        headers["X-Error-Message"] = error.message
        self._send_json(error.status, {"error": error.message}, headers, method=self.command)

    def _base_url(self, port: int) -> str:
        host = (self.headers.get("Host") or self.server.server_address[0]).rsplit(":", 1)[0]
        return f"http://{host}:{port}"
