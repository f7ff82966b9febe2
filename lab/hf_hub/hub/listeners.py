"""`HubServer`: the hub, its CDN and its Xet bridge, each a threaded HTTP listener on its own port."""

from __future__ import annotations

import socket
import sys
import threading
from http.server import ThreadingHTTPServer
from typing import Self

from .faults import Throttle
from .handler import Handler
from .ratelimits import DEFAULT_RATE_LIMIT_WINDOW
from .repo import Repo
from .state import HubState


class _Listener(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], role: str, hub: HubState) -> None:
        self.role, self.hub = role, hub
        super().__init__(address, Handler)

    def handle_error(self, request: socket.socket, client_address: tuple) -> None:
        """Client disconnects mid-response are normal under fault injection; report anything else briefly."""
        error = sys.exc_info()[1]
        if not isinstance(error, OSError):
            self.hub.write_log(f"{self.role}: error serving {client_address[0]}: {error!r}")


class HubServer:
    """The hub, its CDN and its Xet bridge on three ports of one host; use as a context manager or
    start()/stop()."""

    def __init__(self, repo: Repo, *, host: str = "127.0.0.1", port: int = 0, cdn_port: int = 0,
                 bridge_port: int = 0, tokens: tuple[str, ...] = (), tokens_without_access: tuple[str, ...] = (),
                 gated: bool = False, tree_page_size: int = 1000, faults: tuple[dict, ...] = (),
                 throttle_bps: int | None = None, rate_limits: dict[str, int] | None = None,
                 rate_limit_window: float = DEFAULT_RATE_LIMIT_WINDOW, log: object = sys.stderr) -> None:
        self.state = HubState(repo=repo, tokens=frozenset(tokens),
                              tokens_without_access=frozenset(tokens_without_access), gated=gated,
                              tree_page_size=tree_page_size, throttle=Throttle(throttle_bps), log=log)
        self.state.faults.replace(list(faults))
        self.state.rate_limits.set(rate_limits or {}, rate_limit_window)
        self._cdn = _Listener((host, cdn_port), "cdn", self.state)
        self.state.cdn_port = self._cdn.server_address[1]
        self._bridge = _Listener((host, bridge_port), "bridge", self.state)
        self.state.bridge_port = self._bridge.server_address[1]
        self._hub = _Listener((host, port), "hub", self.state)
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        host, port = self._hub.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def cdn_url(self) -> str:
        host, port = self._cdn.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def bridge_url(self) -> str:
        host, port = self._bridge.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> HubServer:
        for listener in (self._cdn, self._bridge, self._hub):
            thread = threading.Thread(target=listener.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self.state.stopping.set()
        for listener in (self._hub, self._cdn, self._bridge):
            listener.shutdown()
            listener.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
