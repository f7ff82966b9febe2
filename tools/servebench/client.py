"""The streaming client: one lean HTTP/1.1 connection per in-flight request, SSE chunks timed as they arrive.

Each connection is an asyncio `Protocol`: the event loop hands it whatever the socket holds (up to 256 KiB per
read), `sse.ResponseParser` frames it, and `RequestRecord.on_token` appends the arrival time of every token chunk
to a flat `array('d')`. Nothing else happens per chunk: no JSON decoding of token chunks, no text kept, no
tokenizer. Latencies, ITL and token counts are derived after the request ends, outside the timed path.
Timestamps are `time.perf_counter()` (CLOCK_MONOTONIC on Linux, shared by every process of the machine).
"""

import asyncio
import json
import random
import ssl
import time
from array import array
from dataclasses import dataclass
from urllib.parse import urlsplit

from .sse import ERROR, INVALID, TOKEN, USAGE, ProtocolError, ResponseParser, classify, error_summary

now = time.perf_counter

# Error kinds of the breakdown (plus "http_<status>").
CONNECT_ERROR = "connect_error"    # the connection could not be opened
DISCONNECTED = "disconnected"      # the server closed the connection before the response ended
TIMEOUT = "timeout"                # no complete response within the request timeout
STREAM_ERROR = "stream_error"      # an `{"error": …}` event in a 200 stream
NO_TOKENS = "no_tokens"            # a 200 stream that ended without any token chunk
NOT_A_STREAM = "not_a_stream"      # 200 without text/event-stream
BAD_RESPONSE = "bad_response"      # bytes that are not HTTP/1.1 or SSE JSON
CANCELLED = "cancelled"            # stopped by the tool (cool-down end, Ctrl-C); never counted as a failure


@dataclass(frozen=True)
class Target:
    """Where requests go, parsed from the base URL (`http[s]://host[:port][/prefix]`). A base URL ending in
    `/v1` (the OpenAI clients' form) is the server's root when the endpoint starts with `/v1/`, as for the smoke
    test."""
    host: str
    port: int
    tls: bool
    path: str
    host_header: str

    @classmethod
    def from_url(cls, url: str, endpoint: str = "/v1/chat/completions") -> "Target":
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected http://host[:port] or https://host[:port], got {url!r}")
        if parts.username or parts.password:
            raise ValueError("no credentials in the URL: put the API key in the environment (--api-key-env)")
        tls = parts.scheme == "https"
        port = parts.port or (443 if tls else 80)
        default_port = port == (443 if tls else 80)
        host = parts.hostname
        host_header = (f"[{host}]" if ":" in host else host) + ("" if default_port else f":{port}")
        prefix = parts.path.rstrip("/")
        if endpoint.startswith("/v1/"):
            prefix = prefix.removesuffix("/v1")
        return cls(host, port, tls, prefix + endpoint, host_header)


_WORDS = ("system", "latency", "cluster", "memory", "garden", "river", "signal", "market", "engine", "window",
          "harbor", "forest", "planet", "silver", "matrix", "canvas", "rhythm", "beacon", "valley", "circuit",
          "orbit", "pixel", "quartz", "meadow", "thunder", "lantern", "compass", "voyage", "ember", "glacier")


class RequestFactory:
    """Builds the HTTP request of each request index: a chat completion that streams exactly `max_tokens` tokens
    (`ignore_eos`), with usage in the final chunk. Every prompt starts with its run seed and index, so neither
    repeated runs nor concurrent requests share a prefix the server could cache; the rest of the body is encoded
    once per run, keeping the send path to one bytes formatting."""

    def __init__(self, target: Target, model: str, *, max_tokens: int, prompt_tokens: int, api_key: str = "",
                 extra_body: dict | None = None) -> None:
        self.target, self.model, self.max_tokens, self.prompt_tokens = target, model, max_tokens, prompt_tokens
        self.extra_body = extra_body or {}
        auth = f"Authorization: Bearer {api_key}\r\n" if api_key else ""
        self._head = (f"POST {target.path} HTTP/1.1\r\nHost: {target.host_header}\r\n"
                      f"Content-Type: application/json\r\nAccept: text/event-stream\r\nUser-Agent: servebench\r\n"
                      f"{auth}").encode("latin-1")
        self._templates: dict[int, tuple[bytes, bytes]] = {}

    def prompt_tail(self, seed: int) -> str:
        """About `prompt_tokens` tokens of words at ~4 characters per token; the server's usage has the count."""
        rng = random.Random(seed)
        words, length = [], 0
        while length < self.prompt_tokens * 4 - 24:
            word = rng.choice(_WORDS)
            words.append(word)
            length += len(word) + 1
        return " ".join(words)

    def _template(self, seed: int) -> tuple[bytes, bytes]:
        if seed not in self._templates:
            marker = "\u0000INDEX\u0000"
            body = {"model": self.model,
                    "messages": [{"role": "user", "content": f"{marker} Continue: {self.prompt_tail(seed)}"}],
                    "max_tokens": self.max_tokens, "ignore_eos": True, "stream": True,
                    "stream_options": {"include_usage": True}, **self.extra_body}
            before, after = json.dumps(body, separators=(",", ":")).split(json.dumps(marker)[1:-1])
            self._templates = {seed: (before.encode(), after.encode())}
        return self._templates[seed]

    def build(self, seed: int, index: int, request_id: str) -> bytes:
        before, after = self._template(seed)
        payload = before + f"Request {seed}-{index}.".encode() + after
        return (self._head + f"X-Request-Id: {request_id}\r\nContent-Length: {len(payload)}\r\n\r\n".encode()
                + payload)


class RequestRecord:
    """One request: when it was due and sent, when each token chunk arrived, what usage said, how it ended.
    It is also the parser's sink, so the hot path is a method call and an `array.append`."""

    __slots__ = ("index", "phase", "scheduled", "worker", "request_id", "sent", "token_times", "output_tokens",
                 "prompt_tokens", "status", "error_kind", "error", "end", "_done")

    def __init__(self, index: int, phase: str, scheduled: float, worker: int = -1) -> None:
        self.index, self.phase, self.scheduled = index, phase, scheduled
        self.worker = worker  # closed loop: the worker that sent it; -1 in open loop
        self.request_id = ""  # the X-Request-Id sent, for finding the request in the server's logs
        self.sent = scheduled
        self.token_times = array("d")
        self.output_tokens: int | None = None  # from usage.completion_tokens; None when the server sent none
        self.prompt_tokens: int | None = None
        self.status = 0
        self.error_kind = ""
        self.error = ""
        self.end = 0.0
        self._done: asyncio.Future | None = None

    # -- results
    @property
    def ok(self) -> bool:
        return not self.error_kind and self.status == 200 and len(self.token_times) > 0

    @property
    def tokens(self) -> int:
        """Output tokens: the server's usage, else the number of token chunks (see `tokens_source`)."""
        return self.output_tokens if self.output_tokens is not None else len(self.token_times)

    @property
    def tokens_source(self) -> str:
        return "usage" if self.output_tokens is not None else "chunks"

    def fail(self, kind: str, message: str) -> None:
        if not self.error_kind:
            self.error_kind, self.error = kind, message

    # -- parser sink
    def on_head(self, status: int, headers: dict) -> None:
        self.status = status
        if status == 200 and not headers.get("content-type", "").startswith("text/event-stream"):
            self.fail(NOT_A_STREAM, f"HTTP 200 with content-type {headers.get('content-type', '(none)')!r}")

    def on_token(self, at: float) -> None:
        self.token_times.append(at)

    def on_data(self, payload: bytes, at: float) -> None:
        kind = classify(payload)
        if kind == TOKEN:
            self.token_times.append(at)
        elif kind == USAGE:
            usage = json.loads(payload)["usage"]
            self.output_tokens = usage.get("completion_tokens")
            self.prompt_tokens = usage.get("prompt_tokens")
        elif kind == ERROR:
            self.fail(STREAM_ERROR, error_summary(0, payload))
        elif kind == INVALID:
            self.fail(BAD_RESPONSE, f"not JSON: {payload[:80]!r}")

    def on_body(self, body: bytes) -> None:
        if self.status != 200:
            self.fail(f"http_{self.status}", error_summary(self.status, body))

    def on_end(self, at: float) -> None:
        self.end = at
        if self.status == 200 and not self.error_kind and not self.token_times:
            self.fail(NO_TOKENS, "the stream ended without a token chunk")


class Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection carrying one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.record: RequestRecord | None = None
        self.parser: ResponseParser | None = None
        self.received = False

    # -- asyncio.Protocol
    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        parser = self.parser
        if parser is None:  # bytes nobody asked for: the connection is unusable
            self.close()
            return
        self.received = True
        try:
            parser.feed(data, now())
        except (ProtocolError, ValueError) as error:
            self._settle(BAD_RESPONSE, str(error))
            self.close()
            return
        if parser.complete:
            if not parser.keep_alive:
                self.close()
            self._settle()

    def connection_lost(self, exc) -> None:
        self.closed = True
        if self.parser is not None:
            if self.parser.connection_closed(now()):
                self._settle()
            else:
                reason = f": {exc}" if exc else ""
                self._settle(DISCONNECTED, f"connection closed before the response ended{reason}")

    # -- use
    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def start(self, record: RequestRecord, request: bytes) -> asyncio.Future:
        self.record, self.parser, self.received = record, ResponseParser(record), False
        record._done = future = asyncio.get_running_loop().create_future()
        record.sent = now()
        self.transport.write(request)
        return future

    def expire(self) -> None:
        """The request timeout: give up on the response and the connection."""
        self._settle(TIMEOUT, "no complete response within the request timeout")
        self.close()

    def _settle(self, kind: str = "", message: str = "") -> None:
        record, self.record, self.parser = self.record, None, None
        if record is None:
            return
        if kind:
            record.fail(kind, message)
            record.end = record.end or now()
        if record._done is not None and not record._done.done():
            record._done.set_result(None)


class Client:
    """Opens connections to the target and runs requests on them; a caller keeps a connection for its next
    request (closed loop) or returns it to the idle pool (open loop)."""

    def __init__(self, target: Target, factory: RequestFactory, *, timeout: float, run_seed: int,
                 run_tag: str) -> None:
        self.target, self.factory, self.timeout = target, factory, timeout
        self.run_seed, self.run_tag = run_seed, run_tag
        self.idle: list[Connection] = []
        self.open: set[Connection] = set()
        self._tls = ssl.create_default_context() if target.tls else None

    async def connect(self) -> Connection:
        loop = asyncio.get_running_loop()
        _, connection = await loop.create_connection(Connection, self.target.host, self.target.port, ssl=self._tls)
        self.open.add(connection)
        return connection

    async def send(self, record: RequestRecord, connection: Connection | None) -> Connection | None:
        """Run one request on `connection` (a new one if None or closed); return the connection if it can carry
        another request. A reused connection that fails before any byte came back (the server closed it while
        idle) is retried once on a fresh connection."""
        record.request_id = f"{self.run_tag}-{record.index}"
        request = self.factory.build(self.run_seed, record.index, record.request_id)
        loop = asyncio.get_running_loop()
        for attempt in (1, 2):
            reused = connection is not None and not connection.closed
            if not reused:
                try:
                    async with asyncio.timeout(self.timeout):
                        connection = await self.connect()
                except (OSError, TimeoutError) as error:
                    record.sent = now()
                    record.fail(CONNECT_ERROR, f"{type(error).__name__}: {error}".rstrip(": "))
                    record.end = now()
                    return None
            done = connection.start(record, request)
            # A timer instead of asyncio.wait_for: on Python 3.11 wait_for can swallow a cancellation.
            timer = loop.call_later(self.timeout, connection.expire)
            try:
                await done
            except asyncio.CancelledError:
                record.fail(CANCELLED, "stopped by servebench")
                record.end = record.end or now()
                self.discard(connection)
                raise
            finally:
                timer.cancel()
            if reused and attempt == 1 and record.error_kind == DISCONNECTED and not connection.received:
                record.error_kind = record.error = ""
                self.discard(connection)
                connection = None
                continue
            break
        if connection.closed or record.error_kind:
            self.discard(connection)
            return None
        return connection

    def discard(self, connection: Connection) -> None:
        connection.close()
        self.open.discard(connection)

    def close_all(self) -> None:
        for connection in list(self.open):
            self.discard(connection)
        self.idle.clear()
