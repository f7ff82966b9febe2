"""The request handler of the three listeners: it reads a request, applies the faults that take a request over,
dispatches it to the hub's, the CDN's, the bridge's or the control routes, and writes the access-log line."""

from __future__ import annotations

from urllib.parse import parse_qs, unquote, urlsplit

from .api import HubRoutes
from .control import ControlRoutes
from .responses import HubError
from .storage import BRIDGE_PATH, CDN_PATH

_SERVER_ERROR_PAGES = {
    500: "Internal Error - We're working hard to fix this as soon as possible!",
    502: "<html><body><h1>502 Bad Gateway</h1></body></html>",
    503: "<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>",
    504: "<html><body><h1>504 Gateway Time-out</h1></body></html>",
}


class Handler(ControlRoutes, HubRoutes):
    """Requests on any listener; `server.role` says which ("hub", "cdn" or "bridge")."""

    def do_GET(self) -> None:
        self._handle("GET")

    def do_HEAD(self) -> None:
        self._handle("HEAD")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def log_message(self, format: str, *args: object) -> None:
        """Replaced by one access-log line per request, written by `_handle`."""

    def _handle(self, method: str) -> None:
        url = urlsplit(self.path)
        self._status, self._body_bytes = 0, 0
        self._rate_limit_headers: dict = {}
        url_path = url.path
        try:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if self.server.role == "hub" and url_path.startswith("/_sim/"):  # type: ignore[attr-defined]
                self._control(method, url_path, body)
                return
            file_path = self._file_path_of(url_path)
            if self._request_faults(method, url_path, file_path):
                return
            if self.server.role == "cdn":  # type: ignore[attr-defined]
                self._cdn(method, url_path, parse_qs(url.query))
            elif self.server.role == "bridge":  # type: ignore[attr-defined]
                self._bridge(method, url_path, parse_qs(url.query))
            else:
                self._hub(method, url_path, parse_qs(url.query), body)
        except HubError as error:
            self._send_error(error)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            self.close_connection = True
        finally:
            self.hub.stats.response(self._status)
            # Path only: query strings carry CDN signatures; request headers (tokens) are never logged.
            self.hub.write_log(f'{self.client_address[0]} {self.server.role} "{method} {url_path}" '  # type: ignore[attr-defined]
                               f"{self._status or '-'} {self._body_bytes}")

    def _file_path_of(self, url_path: str) -> str | None:
        """The repository file a content request is about, for fault matching."""
        if self.server.role == "cdn":  # type: ignore[attr-defined]
            match = CDN_PATH.fullmatch(url_path)
            blob = self.hub.blobs.get(match["sha256"]) if match else None
            return blob.path if blob else None
        if self.server.role == "bridge":  # type: ignore[attr-defined]
            match = BRIDGE_PATH.fullmatch(url_path)
            blob = self.hub.xet_blobs.get(match["xet_hash"]) if match else None
            return blob.path if blob else None
        segments = url_path.strip("/").split("/")
        if len(segments) > 4 and segments[2] == "resolve":
            return unquote("/".join(segments[4:]))
        return None

    def _request_faults(self, method: str, url_path: str, file_path: str | None) -> bool:
        """Apply hang and status faults; True when a fault took the request over."""
        hang = self.hub.faults.take("hang", method, url_path, file_path)
        if hang:
            # No answer at all: wait, then close the connection (the client has normally timed out by then).
            self.hub.stopping.wait(hang["seconds"])
            self.close_connection = True
            return True
        failure = self.hub.faults.take("status", method, url_path, file_path)
        if failure:
            status = int(failure["status"])
            text = _SERVER_ERROR_PAGES.get(status, f"Simulated error {status}")
            if text.startswith("<html>"):
                self._send_bytes(status, text.encode(), "text/html", method=method)
            else:
                self._send_json(status, {"error": text}, method=method)
            return True
        return False
