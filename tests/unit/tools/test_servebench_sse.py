"""servebench's HTTP/1.1 + SSE reading: vLLM's stream shapes however the bytes are split, which chunks carry
output (vLLM's rule), usage as the token count, and the error shapes vLLM 0.33 sends: an `{"error": …}` event in
a 200 stream (serving.py create_streaming_error_response), JSON error bodies with 4xx/5xx (ErrorResponse, the
API-key middleware, FastAPI), and a connection that drops mid-stream."""

import asyncio
import json
import random

import pytest

from tools.servebench import sse
from tools.servebench.client import DISCONNECTED, NOT_A_STREAM, STREAM_ERROR, Connection, RequestRecord

BASE = ('{"id":"chatcmpl-sb1-7","object":"chat.completion.chunk","created":1795923851,'
        '"model":"deepseek-ai/DeepSeek-V3.2",')
ROLE = BASE + '"choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}'
TOKEN = BASE + '"choices":[{"index":0,"delta":{"content":" word"},"logprobs":null,"finish_reason":null}]}'
LAST = BASE + ('"choices":[{"index":0,"delta":{"content":"."},"logprobs":null,"finish_reason":"length",'
               '"stop_reason":null}]}')
USAGE = BASE + '"choices":[],"usage":{"prompt_tokens":40,"total_tokens":45,"completion_tokens":5}}'
# vLLM's mid-stream error: json.dumps(ErrorResponse.model_dump()), so with spaces, then [DONE].
STREAM_ERROR_EVENT = json.dumps({"error": {"message": "Internal server error", "type": "BadRequestError",
                                           "param": None, "code": 400}})
HEAD = (b"HTTP/1.1 200 OK\r\ndate: Sun, 29 Nov 2026 03:00:00 GMT\r\nserver: uvicorn\r\n"
        b"content-type: text/event-stream; charset=utf-8\r\ntransfer-encoding: chunked\r\n\r\n")


def chunk(data: str) -> bytes:
    event = f"data: {data}\n\n".encode()
    return b"%x\r\n%s\r\n" % (len(event), event)


def vllm_stream(*events: str) -> bytes:
    return HEAD + b"".join(chunk(event) for event in events) + b"0\r\n\r\n"


STREAM = vllm_stream(ROLE, TOKEN, TOKEN, TOKEN, TOKEN, LAST, USAGE, "[DONE]")


def feed(data: bytes, pieces: list[int] | None = None) -> tuple[RequestRecord, sse.ResponseParser]:
    """Feed `data` split at `pieces` (sizes); each piece arrives one 'second' after the previous."""
    record = RequestRecord(0, "measured", 0.0)
    parser = sse.ResponseParser(record)
    position, moment = 0, 0.0
    for size in pieces or [len(data)]:
        moment += 1.0
        parser.feed(data[position:position + size], moment)
        position += size
    if position < len(data):
        parser.feed(data[position:], moment + 1)
    return record, parser


# ------------------------------------------------------------------------------------------------ streams
def test_a_vllm_stream_gives_one_token_time_per_output_chunk_and_usage_tokens():
    record, parser = feed(STREAM)
    assert parser.complete and parser.keep_alive
    assert record.ok and record.status == 200
    assert len(record.token_times) == 5        # the role chunk and the usage chunk carry no output
    assert (record.output_tokens, record.prompt_tokens, record.tokens_source) == (5, 40, "usage")


@pytest.mark.parametrize("seed", range(5))
def test_any_split_of_the_bytes_parses_the_same(seed):
    rng = random.Random(seed)
    pieces, left = [], len(STREAM)
    while left > 0:
        pieces.append(min(left, rng.randint(1, 120)))
        left -= pieces[-1]
    record, parser = feed(STREAM, pieces)
    assert parser.complete and record.ok
    assert len(record.token_times) == 5 and record.output_tokens == 5
    assert list(record.token_times) == sorted(record.token_times)


def test_byte_by_byte_delivery_times_each_token_when_its_chunk_completes():
    record, _ = feed(STREAM, [1] * len(STREAM))  # byte n arrives at time n
    token_chunk_ends = []
    position = len(HEAD)
    for event in (ROLE, TOKEN, TOKEN, TOKEN, TOKEN, LAST):
        position += len(chunk(event))
        if event != ROLE:
            token_chunk_ends.append(position)
    assert list(record.token_times) == [float(end) for end in token_chunk_ends]


@pytest.mark.parametrize(("payload", "kind"), [
    (TOKEN, sse.TOKEN),
    (BASE + '"choices":[{"index":0,"delta":{"reasoning":"think"},"logprobs":null,"finish_reason":null}]}',
     sse.TOKEN),
    (BASE + '"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{}"}}]}}]}',
     sse.TOKEN),
    (BASE + '"choices":[{"index":0,"delta":{"content":""},"logprobs":null,"finish_reason":null}]}',
     sse.TOKEN),                                # a token that decodes to nothing (vLLM counts it)
    (ROLE, sse.NO_TOKEN),
    (BASE + '"choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}', sse.NO_TOKEN),
    (BASE + '"choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"}}]}', sse.TOKEN),
    (USAGE, sse.USAGE),
    ("[DONE]", sse.DONE),
    (STREAM_ERROR_EVENT, sse.ERROR),
    ("not json", sse.INVALID),
])
def test_classification_follows_vllms_streamed_output_rule(payload, kind):
    assert sse.classify(payload.encode()) == kind


def test_crlf_events_multi_line_data_and_comments():
    split = USAGE.index('"usage"')  # between two members: a newline there is still JSON
    body = (b": ping\r\n\r\ndata: " + TOKEN.encode() + b"\r\n\r\n"
            + b"data: " + USAGE[:split].encode() + b"\r\ndata: " + USAGE[split:].encode() + b"\r\n\r\n")
    data = HEAD + b"%x\r\n%s\r\n" % (len(body), body) + b"0\r\n\r\n"
    record, parser = feed(data)
    assert parser.complete and len(record.token_times) == 1
    # SSE joins data lines with "\n"; JSON does not mind the newline the join put inside the object.
    assert record.output_tokens == 5


def test_chunk_extensions_and_a_close_delimited_stream():
    data = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n"
            + f"data: {TOKEN}\n\ndata: {USAGE}\n\ndata: [DONE]\n\n".encode())
    record, parser = feed(data)
    assert not parser.complete and not parser.keep_alive
    assert parser.connection_closed(9.0) and record.end == 9.0
    assert record.ok and record.output_tokens == 5
    extended = HEAD.replace(b"\r\n\r\n", b"\r\n\r\n", 1) + b"%x;name=value\r\n" % len(f"data: {TOKEN}\n\n")
    record, parser = feed(extended + f"data: {TOKEN}\n\n".encode() + b"\r\n0\r\n\r\n")
    assert parser.complete and len(record.token_times) == 1


# ------------------------------------------------------------------------------------------------ errors
def test_an_error_event_mid_stream_fails_the_request_with_vllms_message():
    record, parser = feed(vllm_stream(ROLE, TOKEN, STREAM_ERROR_EVENT, "[DONE]"))
    assert parser.complete
    assert not record.ok and record.error_kind == STREAM_ERROR
    assert record.error == "BadRequestError: Internal server error"
    assert len(record.token_times) == 1  # what it streamed before the error stays on record


def json_response(status: int, reason: str, body: dict | str, content_type="application/json") -> bytes:
    payload = (json.dumps(body) if isinstance(body, dict) else body).encode()
    return (f"HTTP/1.1 {status} {reason}\r\nserver: uvicorn\r\ncontent-type: {content_type}\r\n"
            f"content-length: {len(payload)}\r\n\r\n").encode() + payload


@pytest.mark.parametrize(("response", "kind", "text"), [
    (json_response(401, "Unauthorized", {"error": "Unauthorized"}), "http_401", "HTTP 401: Unauthorized"),
    (json_response(404, "Not Found", {"error": {
        "message": "The model `gpt-4` does not exist. Valid aliases: deepseek-ai/DeepSeek-V3.2",
        "type": "NotFoundError", "param": "model", "code": 404}}),
     "http_404", "HTTP 404: NotFoundError: The model `gpt-4` does not exist. Valid aliases: deepseek-ai/DeepSeek-V3.2"),
    (json_response(400, "Bad Request", {"error": {
        "message": "1 validation error:\n  {'type': 'missing', 'loc': 'body.messages'}", "type": "Bad Request",
        "param": "body.messages", "code": 400}}),
     "http_400", "HTTP 400: Bad Request: 1 validation error:"),
    (json_response(503, "Service Unavailable", {"error": {
        "message": "Request queue is full", "type": "ServiceUnavailableError", "param": None, "code": 503}}),
     "http_503", "HTTP 503: ServiceUnavailableError: Request queue is full"),
    (json_response(405, "Method Not Allowed", {"detail": "Method Not Allowed"}), "http_405",
     "HTTP 405: Method Not Allowed"),
    (json_response(502, "Bad Gateway", "<html><body>502 Bad Gateway</body></html>", "text/html"), "http_502",
     "HTTP 502: <html><body>502 Bad Gateway</body></html>"),
])
def test_http_error_bodies_become_one_line_per_kind(response, kind, text):
    record, parser = feed(response)
    assert parser.complete and parser.keep_alive
    assert not record.ok and record.error_kind == kind and record.error == text


def test_a_200_that_is_not_a_stream_is_an_error():
    record, _ = feed(json_response(200, "OK", {"choices": []}))
    assert record.error_kind == NOT_A_STREAM


def test_a_response_that_is_not_http_is_refused():
    with pytest.raises(sse.ProtocolError):
        feed(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")


class FakeTransport:
    def __init__(self) -> None:
        self.written, self.closed = [], False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def close(self) -> None:
        self.closed = True


def test_a_connection_lost_mid_stream_settles_the_request_as_disconnected():
    async def scenario() -> tuple[RequestRecord, Connection]:
        connection = Connection()
        connection.connection_made(FakeTransport())
        record = RequestRecord(3, "measured", 0.0)
        done = connection.start(record, b"POST / HTTP/1.1\r\n\r\n")
        connection.data_received(HEAD + chunk(ROLE) + chunk(TOKEN))
        connection.connection_lost(ConnectionResetError(104, "Connection reset by peer"))
        await asyncio.wait_for(done, 1)
        return record, connection

    record, connection = asyncio.run(scenario())
    assert connection.closed
    assert record.error_kind == DISCONNECTED and "reset by peer" in record.error
    assert len(record.token_times) == 1 and not record.ok


def test_a_finished_response_leaves_the_connection_ready_for_the_next_request():
    async def scenario() -> tuple[RequestRecord, Connection]:
        connection = Connection()
        connection.connection_made(FakeTransport())
        record = RequestRecord(4, "measured", 0.0)
        done = connection.start(record, b"POST / HTTP/1.1\r\n\r\n")
        for piece in (STREAM[:150], STREAM[150:]):
            connection.data_received(piece)
        await asyncio.wait_for(done, 1)
        return record, connection

    record, connection = asyncio.run(scenario())
    assert record.ok and not connection.closed and connection.record is None
