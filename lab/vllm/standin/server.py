"""The HTTP server: connections, keep-alive, the access log, and closing on shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from http import HTTPStatus

from .app import App
from .http_protocol import MAX_HEAD_BYTES, HttpError, HttpRequest, read_request, response_head
from .log import uvicorn_log


class HttpServer:
    """Connections, keep-alive, access log; `close()` stops accepting and ends idle connections."""

    def __init__(self, app: App, sock: socket.socket, *, access_log: bool, quiet_paths: set[str],
                 keep_alive: float) -> None:
        self.app, self.sock, self.access_log, self.quiet_paths = app, sock, access_log, quiet_paths
        self.keep_alive = keep_alive
        self.server: asyncio.base_events.Server | None = None
        self.idle: set[asyncio.StreamWriter] = set()
        self.busy = 0
        self.drained = asyncio.Event()
        self.drained.set()
        self.closing = False

    async def start(self) -> None:
        if self.sock.family == socket.AF_UNIX:
            self.server = await asyncio.start_unix_server(self._connection, sock=self.sock, limit=MAX_HEAD_BYTES)
        else:
            self.server = await asyncio.start_server(self._connection, sock=self.sock, limit=MAX_HEAD_BYTES,
                                                     backlog=2048)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        client = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "unix"
        first = True
        try:
            while not self.closing:
                self.idle.add(writer)
                try:
                    if first:
                        request = await read_request(reader, writer)
                    else:
                        request = await asyncio.wait_for(read_request(reader, writer), self.keep_alive)
                except (TimeoutError, ConnectionError):
                    return
                except HttpError:
                    writer.write(response_head(400, [("content-type", "text/plain; charset=utf-8"),
                                                     ("connection", "close"), ("content-length", "11")])
                                 + b"Bad Request")
                    return
                finally:
                    self.idle.discard(writer)
                if request is None:
                    return
                first = False
                self.busy += 1
                self.drained.clear()
                try:
                    status = await self._respond(request, reader, writer)
                finally:
                    self.busy -= 1
                    if not self.busy:
                        self.drained.set()
                path = request.path.split("?", 1)[0]
                if self.access_log and path not in self.quiet_paths:
                    uvicorn_log(f'{client} - "{request.method} {request.path} {request.version}" {status} '
                                f"{HTTPStatus(status).phrase}", sys.stdout)
                await writer.drain()
                if not request.keep_alive:
                    return
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def _respond(self, request: HttpRequest, reader, writer: asyncio.StreamWriter) -> int:
        result = await self.app.handle(request, reader, writer)
        if isinstance(result, int):
            return result
        headers = list(result.headers)
        headers.append(("content-length", str(len(result.body))))
        if result.content_type:
            headers.append(("content-type", result.content_type))
        if not request.keep_alive or self.closing:
            headers.append(("connection", "close"))
        writer.write(response_head(result.status, headers) + (b"" if request.method == "HEAD" else result.body))
        return result.status

    async def close(self, grace: float) -> None:
        self.closing = True
        if self.server is not None:
            self.server.close()
        for writer in list(self.idle):
            writer.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.drained.wait(), grace)
