"""HTTP/1.1 response framing and Server-Sent Events as vLLM streams them, parsed incrementally.

`ResponseParser` is fed the bytes of one response as they arrive (`feed(data, now)`) and calls its sink:
`on_head(status, headers)`, then for a 200 `text/event-stream` body, once per SSE event, `on_token(now)` for an
event it recognises on the spot as a token chunk or else `on_data(payload, now)` with the event's `data:` field
(without the prefix); for any other body `on_body(body)` once; finally `on_end(now)`. It handles
`Transfer-Encoding: chunked`, `Content-Length` and close-delimited bodies.

`classify` sorts one event's data without decoding JSON in the common case: vLLM sends one chunk per token whose
delta starts with `{"content":"…` (or `"reasoning"`), so the bytes after `"delta":{` tell a token chunk from the
role chunk, the usage chunk (`"choices":[]`) or an error event. Anything unusual falls back to `json.loads` and
the rule of `vllm bench serve` (`_choice_has_streamed_output` in vllm/benchmarks/lib/endpoint_request_func.py).
"""

import json

# Kinds of SSE data payloads.
TOKEN = 1       # carries streamed output (a token, or several with speculative decoding)
NO_TOKEN = 2    # the role chunk, an empty delta, a finish chunk without content
USAGE = 3       # the final `usage` chunk (`stream_options.include_usage`), choices empty
ERROR = 4       # `{"error": {...}}` sent mid-stream (vLLM's create_streaming_error_response)
DONE = 5        # `[DONE]`
INVALID = 6     # not JSON

_DELTA = b'"delta":{'
_CONTENT_DELTA = b'"delta":{"content":"'
_REASONING_DELTA = b'"delta":{"reasoning":"'
_FAST_TOKEN_KEYS = (b'"content":"', b'"reasoning":"', b'"reasoning_content":"')
_ROLE_ONLY = b'"role":"assistant","content":""}'
_OUTPUT_KEYS = ("content", "reasoning", "reasoning_content", "tool_calls", "function_call")


def choice_has_streamed_output(choice: dict) -> bool:
    """vLLM's rule: a delta with content, reasoning or tool calls is output; so is an empty `content` without a
    `role` (a token that decodes to nothing). `reasoning_content` (vLLM < 0.16) counts too."""
    delta = choice.get("delta")
    if not isinstance(delta, dict):
        return False
    if any(delta.get(key) for key in _OUTPUT_KEYS):
        return True
    return delta.get("content") == "" and "role" not in delta


def classify(payload: bytes) -> int:
    """The kind of one SSE data payload; see the module docstring. JSON is decoded only off the fast path."""
    start = payload.find(_DELTA)
    if start >= 0:
        at = start + len(_DELTA)
        for key in _FAST_TOKEN_KEYS:
            if payload.startswith(key, at):
                # A non-empty string value is output; `""` needs the slow rule (role chunk or empty token).
                return TOKEN if payload[at + len(key):at + len(key) + 1] != b'"' else _classify_slow(payload)
        if payload.startswith(b"}", at) or payload.startswith(_ROLE_ONLY, at):
            return NO_TOKEN
        return _classify_slow(payload)
    if payload == b"[DONE]":
        return DONE
    return _classify_slow(payload)


def _classify_slow(payload: bytes) -> int:
    try:
        data = json.loads(payload)
    except ValueError:
        return INVALID
    if not isinstance(data, dict):
        return INVALID
    if data.get("error") is not None:
        return ERROR
    choices = data.get("choices")
    if choices and isinstance(choices[0], dict) and choice_has_streamed_output(choices[0]):
        return TOKEN
    if not choices and isinstance(data.get("usage"), dict):
        return USAGE
    return NO_TOKEN


def event_data(event: bytes) -> bytes | None:
    """The data of one SSE event (lines `data:` joined by newlines), None for comments and data-less events."""
    if event.startswith(b"data: ") and b"\n" not in event:
        return event[6:]
    lines = [line[5:].removeprefix(b" ") for line in event.split(b"\n") if line.startswith(b"data:")]
    return b"\n".join(lines) if lines else None


def error_summary(status: int, body: bytes) -> str:
    """One line for an error response or event: vLLM's `{"error": {"type", "message"}}`, the API-key middleware's
    `{"error": "Unauthorized"}`, FastAPI's `{"detail": ...}`, or the start of any other body."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    prefix = f"HTTP {status}: " if status else ""
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict):
            kind = error.get("type") or "error"
            message = str(error.get("message") or "").strip().splitlines()
            return f"{prefix}{kind}: {message[0]}" if message else f"{prefix}{kind}"
        if error is not None:
            return f"{prefix}{error}"
        if "detail" in data:
            return f"{prefix}{data['detail']}"
    text = body[:200].decode("utf-8", "replace").strip()
    return f"{prefix}{text}" if text else f"{prefix}(empty body)"


class ProtocolError(Exception):
    """The server's bytes are not a valid HTTP/1.1 response."""


_HEAD, _CHUNK_SIZE, _CHUNK_DATA, _TRAILER, _LENGTH, _UNTIL_CLOSE, _DONE = range(7)
MAX_HEAD_BYTES = 64 * 1024


class ResponseParser:
    """Incremental parser of one HTTP/1.1 response; see the module docstring for the sink's methods."""

    __slots__ = ("sink", "state", "buffer", "remaining", "status", "headers", "streaming", "keep_alive",
                 "body", "events", "delta_offset")

    def __init__(self, sink) -> None:
        self.sink = sink
        self.state = _HEAD
        self.buffer = b""
        self.remaining = 0
        self.status = 0
        self.headers: dict[str, str] = {}
        self.streaming = False
        self.keep_alive = True
        self.body: list[bytes] = []
        self.events = b""  # SSE bytes not yet ending in a blank line
        self.delta_offset = 0

    @property
    def complete(self) -> bool:
        return self.state == _DONE

    def feed(self, data: bytes, now: float) -> None:
        if self.state == _CHUNK_SIZE and self.streaming and not self.buffer and not self.events:
            data = self._feed_whole_events(data, now)
            if not data:
                return
        buffer = self.buffer + data if self.buffer else data
        self.buffer = b""
        state = self.state
        if state == _HEAD:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > MAX_HEAD_BYTES:
                    raise ProtocolError("response head larger than 64 KiB")
                self.buffer = buffer
                return
            self._parse_head(buffer[:end])
            buffer = buffer[end + 4:]
            state = self.state
        if state in (_CHUNK_SIZE, _CHUNK_DATA, _TRAILER):
            self._feed_chunked(buffer, now)
        elif state == _LENGTH:
            take = buffer[:self.remaining]
            self.remaining -= len(take)
            if take:
                self._payload(take, now)
            if self.remaining == 0:
                self._finish(now)
        elif state == _UNTIL_CLOSE:
            self._payload(buffer, now)

    def _feed_whole_events(self, data: bytes, now: float) -> bytes:
        """The hot path: HTTP chunks that each hold one whole SSE event, back to back (how vLLM and uvicorn
        stream), token chunks recognised in place by their `"delta":{"content":"x` (or `"reasoning"`). Returns
        what it could not take (a partial chunk, the last chunk, anything unusual) for the general path."""
        sink = self.sink
        on_token, on_data, position, size = sink.on_token, sink.on_data, 0, len(data)
        while position < size:
            eol = data.find(b"\r\n", position)
            if eol < 0:
                break
            try:
                length = int(data[position:eol], 16)
            except ValueError:
                break
            start = eol + 2
            end = start + length
            if length < 2 or end + 2 > size or data[end - 1] != 10 or data[end - 2] != 10:
                break
            position = end + 2
            # A stream's chunks share their prefix (id, created, model), so the delta sits where it sat last time.
            at = start + self.delta_offset
            if not data.startswith(_CONTENT_DELTA, at, end - 2):
                at = data.find(_CONTENT_DELTA, start, end)
                if at >= 0:
                    self.delta_offset = at - start
            if at >= 0 and data[at + len(_CONTENT_DELTA)] != 34:  # 34: '"', i.e. empty content
                on_token(now)
                continue
            at = data.find(_REASONING_DELTA, start, end)
            if at >= 0 and data[at + len(_REASONING_DELTA)] != 34:
                on_token(now)
                continue
            payload = event_data(data[start:end - 2])
            if payload is not None:
                on_data(payload, now)
        return data[position:] if position else data

    def connection_closed(self, now: float) -> bool:
        """The server closed the connection: True if that ended the response properly."""
        if self.state == _UNTIL_CLOSE:
            self._finish(now)
            return True
        return self.state == _DONE

    def _parse_head(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise ProtocolError(f"not an HTTP/1.1 status line: {lines[0][:80]!r}")
        self.status = int(parts[1])
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        headers = self.headers
        self.keep_alive = headers.get("connection", "").lower() != "close" and parts[0] == "HTTP/1.1"
        self.streaming = self.status == 200 and headers.get("content-type", "").startswith("text/event-stream")
        self.sink.on_head(self.status, headers)
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self.state = _CHUNK_SIZE
        elif "content-length" in headers:
            self.remaining = int(headers["content-length"])
            self.state = _LENGTH
        else:
            self.state = _UNTIL_CLOSE
            self.keep_alive = False

    def _feed_chunked(self, buffer: bytes, now: float) -> None:
        position, size = 0, len(buffer)
        while position < size:
            if self.state == _CHUNK_SIZE:
                eol = buffer.find(b"\r\n", position)
                if eol < 0:
                    break
                try:
                    length = int(buffer[position:eol].split(b";", 1)[0], 16)
                except ValueError:
                    raise ProtocolError(f"bad chunk size line {buffer[position:eol][:40]!r}") from None
                position = eol + 2
                if length == 0:
                    self.state = _TRAILER
                    continue
                self.remaining = length
                self.state = _CHUNK_DATA
            elif self.state == _CHUNK_DATA:
                end = position + self.remaining
                if end + 2 > size:  # wait for the whole chunk and its CRLF: vLLM's chunks are small
                    break
                self._payload(buffer[position:end], now)
                position = end + 2
                self.state = _CHUNK_SIZE
            else:  # trailer section: lines until an empty one
                eol = buffer.find(b"\r\n", position)
                if eol < 0:
                    break
                empty = eol == position
                position = eol + 2
                if empty:
                    self._finish(now)
                    return
        if position < size:
            self.buffer = buffer[position:]

    def _payload(self, data: bytes, now: float) -> None:
        if not self.streaming:
            self.body.append(data)
            return
        if not self.events and data.endswith(b"\n\n") and data.find(b"\n\n") == len(data) - 2:
            payload = event_data(data[:-2])  # the usual case: one chunk is one event
            if payload is not None:
                self.sink.on_data(payload, now)
            return
        events = (self.events + data).replace(b"\r\n", b"\n") if b"\r" in data else self.events + data
        *complete, self.events = events.split(b"\n\n")
        for event in complete:
            payload = event_data(event)
            if payload is not None:
                self.sink.on_data(payload, now)

    def _finish(self, now: float) -> None:
        self.state = _DONE
        if not self.streaming:
            self.sink.on_body(b"".join(self.body))
        self.sink.on_end(now)
