#!/usr/bin/env python3
"""A fast OpenAI-shaped streaming chat server whose token schedule is known exactly, for measuring load clients.

Every `POST /v1/chat/completions` gets `200 text/event-stream` (chunked, as uvicorn sends vLLM's streams): the
role chunk and the first token `--ttft` seconds after the request was read, then one token every `--itl`
seconds until `max_tokens` (or `max_completion_tokens`, default 64), then the usage chunk and `[DONE]`; the
chunks have vLLM's shapes. Tokens are batched into chunks as vLLM 0.33 does with a stream interval of N (the
request's `stream_interval`, clamped up to the server's `--stream-interval`, default 1): the first token at once,
then a chunk each time N more tokens are generated, and the last chunk (with `finish_reason`) when the last token
is. Nothing is generated: every chunk's bytes are built once per request.

The server records, per request (keyed by the `X-Request-Id` header), when it read the request and when it
wrote the first and last token (the moment each write returned), and how late each write was against its
schedule (CLOCK_MONOTONIC, the clock of `time.perf_counter()` in every process of the machine). `GET /stats`
returns them as JSON (`?reset=1` clears them); `GET /health` answers 200. So a benchmark can split a client's
measured latency into the server's part and the client's own.

    python3 fast_sse_server.py --port 0 --ttft 0.05 --itl 0.008    # prints "READY http://127.0.0.1:PORT"

Stdlib only (uvloop when importable). Decode wake-ups are batched per `--tick` (default 0.5 ms): every due token
is written in the wake-up at or after its due time, and the lateness statistics say how far after. One process:
give it a core of its own (the benchmark pins it) so that it is not the bottleneck.
"""

import argparse
import asyncio
import heapq
import json
import signal
import sys
import time
from collections import deque

now = time.perf_counter


class Stream:
    """One request being answered: its pre-built chunks and its schedule."""

    __slots__ = ("transport", "first", "token_chunk", "final", "tokens", "sent", "due", "itl", "interval", "record")

    def __init__(self, transport, request_id: str, model: str, tokens: int, start: float, ttft: float,
                 itl: float, interval: int, record: dict) -> None:
        base = f'{{"id":"chatcmpl-{request_id}","object":"chat.completion.chunk","created":{int(time.time())},' \
               f'"model":{json.dumps(model)},"choices":['
        role = base + '{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}'
        token = base + '{"index":0,"delta":{"content":"%s"},"logprobs":null,"finish_reason":null}]}'
        last = base + ('{"index":0,"delta":{"content":"%s"},"logprobs":null,"finish_reason":"length",'
                       '"stop_reason":null}]}')
        usage = base[:-len('"choices":[')] + (f'"choices":[],"usage":{{"prompt_tokens":16,"total_tokens":'
                                               f'{16 + tokens},"completion_tokens":{tokens}}}}}')
        # Tokens after the first go out N at a time; the last chunk carries the 1..N that remain.
        after_first = tokens - 1
        in_last = after_first - interval * ((after_first - 1) // interval) if after_first else 0
        self.transport, self.tokens, self.itl, self.interval, self.record = transport, tokens, itl, interval, record
        self.token_chunk = frame(token % (" tok" * interval))
        self.final = frame(usage) + frame("[DONE]") + b"0\r\n\r\n"
        if after_first:
            self.final = frame(last % (" tok" * in_last)) + self.final
            self.first = frame(role) + frame(token % " tok")
        else:
            self.first = frame(role) + frame(last % " tok") + self.final
        self.record["first_due"] = start + ttft
        self.sent = 0  # tokens written so far
        self.due = start + ttft

    def write_next(self) -> bool:
        """Write the chunk that is due; return True when the stream has more to send (self.due is then its next
        chunk's due time)."""
        sent, tokens = self.sent, self.tokens
        if sent == 0:
            self.transport.write(self.first)
            sent = 1
        elif tokens - sent > self.interval:
            self.transport.write(self.token_chunk)
            sent += self.interval
        else:
            self.transport.write(self.final)
            sent = tokens
        self.sent = sent
        if sent >= tokens:
            return False
        self.due += self.itl * min(self.interval, tokens - sent)
        return True

    def __lt__(self, other: "Stream") -> bool:
        return self.due < other.due


def frame(data: str) -> bytes:
    event = f"data: {data}\n\n".encode()
    return b"%x\r\n%s\r\n" % (len(event), event)


class Scheduler:
    """Writes every stream's chunks when they are due. Every stream has the same TTFT, so first tokens wait in a
    FIFO queue, sorted by due time; later chunks wait in a heap (a last chunk with fewer tokens comes sooner). A
    wake-up merges the two: one timer for all streams."""

    def __init__(self, tick: float) -> None:
        self.loop = asyncio.get_running_loop()
        self.tick = tick
        self.starting: deque[Stream] = deque()
        self.decoding: list[Stream] = []
        self.timer = None
        self.timer_when = 0.0  # uvloop's handles of already-due timers have no when()
        self.lateness_sum = 0.0
        self.lateness_max = 0.0
        self.chunks_written = 0
        self.tokens_written = 0
        self.late_over_1ms = 0

    def add(self, stream: Stream) -> None:
        self.starting.append(stream)
        self._arm(stream.due)

    def _arm(self, when: float) -> None:
        if self.timer is not None:
            if self.timer_when <= when:
                return
            self.timer.cancel()
        # perf_counter and loop.time() are both CLOCK_MONOTONIC on Linux.
        self.timer, self.timer_when = self.loop.call_at(when, self._run), when

    def _run(self) -> None:
        self.timer = None
        starting, decoding, moment = self.starting, self.decoding, now()
        chunks, tokens, late_sum, late_max, late_count = 0, 0, 0.0, self.lateness_max, 0
        while True:
            first = starting[0] if starting and starting[0].due <= moment else None
            later = decoding[0] if decoding and decoding[0].due <= moment else None
            if first is None and later is None:
                break
            if later is None or (first is not None and first.due <= later.due):
                stream = starting.popleft()
            else:
                stream = heapq.heappop(decoding)
            if stream.transport.is_closing():
                continue
            due = stream.due
            late = moment - due
            late_sum += late
            chunks += 1
            if late > late_max:
                late_max = late
            if late > 0.001:
                late_count += 1
            sent_before = stream.sent
            more = stream.write_next()
            tokens += stream.sent - sent_before
            # The write's own time, not the wake-up's: a wake-up writes many chunks, one after the other.
            if sent_before == 0:
                stream.record["first_written"] = now()
            if more:
                heapq.heappush(decoding, stream)
            else:
                stream.record["last_due"], stream.record["last_written"] = due, now()
        self.chunks_written += chunks
        self.tokens_written += tokens
        self.lateness_sum += late_sum
        self.lateness_max = late_max
        self.late_over_1ms += late_count
        pending = [queue[0].due for queue in (starting, decoding) if queue]
        if pending:
            self._arm(max(min(pending), self.loop.time() + self.tick))

    def stats(self) -> dict:
        chunks = self.chunks_written
        return {"tokens_written": self.tokens_written, "chunks_written": chunks,
                "lateness_mean": self.lateness_sum / chunks if chunks else 0.0,
                "lateness_max": self.lateness_max, "late_over_1ms": self.late_over_1ms}

    def reset(self) -> None:
        self.lateness_sum = self.lateness_max = 0.0
        self.tokens_written = self.chunks_written = self.late_over_1ms = 0


class Server:
    def __init__(self, args) -> None:
        self.ttft, self.itl, self.stream_interval = args.ttft, args.itl, args.stream_interval
        self.scheduler = Scheduler(args.tick)
        self.requests: list[dict] = []


class Connection(asyncio.Protocol):
    def __init__(self, server: Server) -> None:
        self.server = server
        self.buffer = b""
        self.transport = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        arrived = now()
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].decode("latin-1").split("\r\n")
            headers = {}
            for line in head[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0"))
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4:end + 4 + length]
            self.buffer = self.buffer[end + 4 + length:]
            method, path = (head[0].split(" ") + ["", ""])[:2]
            self.respond(method, path, headers, body, arrived)

    def respond(self, method: str, path: str, headers: dict, body: bytes, arrived: float) -> None:
        server = self.server
        if method == "GET" and path.startswith("/stats"):
            payload = {**server.scheduler.stats(), "requests": server.requests}
            if "reset=1" in path:
                server.requests = []
                server.scheduler.reset()
            self.reply(200, json.dumps(payload).encode())
        elif method == "GET" and path == "/health":
            self.reply(200, b"")
        elif method == "POST" and path == "/v1/chat/completions":
            try:
                request = json.loads(body)
            except ValueError:
                self.reply(400, b'{"error":{"message":"invalid JSON","type":"BadRequestError","param":null,'
                                b'"code":400}}')
                return
            tokens = int(request.get("max_tokens") or request.get("max_completion_tokens") or 64)
            interval = max(int(request.get("stream_interval") or 1), server.stream_interval)
            request_id = headers.get("x-request-id") or f"r{len(server.requests)}"
            record = {"id": request_id, "received": arrived}
            server.requests.append(record)
            self.transport.write(b"HTTP/1.1 200 OK\r\nserver: fast-sse\r\ncontent-type: text/event-stream; "
                                 b"charset=utf-8\r\ntransfer-encoding: chunked\r\n\r\n")
            server.scheduler.add(Stream(self.transport, request_id, str(request.get("model", "")), max(tokens, 1),
                                        arrived, server.ttft, server.itl, interval, record))
        else:
            self.reply(404, b'{"detail":"Not Found"}')

    def reply(self, status: int, body: bytes) -> None:
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}[status]
        self.transport.write(f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
                             f"content-length: {len(body)}\r\n\r\n".encode() + body)


async def serve(args) -> None:
    loop = asyncio.get_running_loop()
    server = Server(args)
    listener = await loop.create_server(lambda: Connection(server), args.host, args.port, backlog=4096)
    port = listener.sockets[0].getsockname()[1]
    print(f"READY http://{args.host}:{port}", flush=True)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    listener.close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ttft", type=float, default=0.05, help="seconds from reading a request to its first token")
    parser.add_argument("--itl", type=float, default=0.008, help="seconds between a stream's tokens")
    parser.add_argument("--stream-interval", type=int, default=1, help="least tokens per chunk (vLLM's "
                        "--stream-interval); a request's stream_interval can raise it")
    parser.add_argument("--tick", type=float, default=0.0005, help="least seconds between two decode wake-ups")
    args = parser.parse_args(argv)
    try:
        import uvloop
        factory = uvloop.new_event_loop
    except ImportError:
        factory = asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
