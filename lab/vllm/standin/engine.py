"""A request in the engine (its script, how far it got, what the reasoning and tool parsers made of it), and the
engine that schedules and decodes them."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import uuid
from collections import deque

from .metrics import Metrics
from .replies import CONTENT, EOS, REASONING, Piece, Script

_sequence = itertools.count()


class Generation:
    def __init__(self, *, rid: str, prompt_tokens: int, max_tokens: int, script: Script, stop: list[str],
                 ignore_eos: bool, min_tokens: int, include_reasoning: bool, sink) -> None:
        self.rid, self.prompt_tokens, self.max_tokens, self.script = rid, prompt_tokens, max_tokens, script
        self.stop, self.ignore_eos, self.min_tokens = stop, ignore_eos, min_tokens
        self.include_reasoning, self.sink = include_reasoning, sink
        self.seq = next(_sequence)
        self.piece_index = 0
        self.emitted = 0
        self.reasoning: list[str] = []
        self.content: list[str] = []
        self.content_tail = ""
        self.tool_calls: dict[int, dict] = {}
        self.reasoning_tokens = 0
        self.finish_reason: str | None = None
        self.stop_reason: str | None = None
        self.arrival = self.admitted = self.first_token = self.last_token = 0.0
        self.state = "new"  # new, waiting, prefill, decode, finished
        self.due = 0.0

    @property
    def finished(self) -> bool:
        return self.state == "finished"

    def _next_piece(self) -> Piece:
        eos_index = self.script.eos_index
        if eos_index is not None and self.piece_index == eos_index and (
                self.ignore_eos or self.emitted < self.min_tokens):
            self.piece_index += 1  # EOS suppressed: the model keeps generating
        elif (eos_index is not None and self.piece_index > eos_index and not self.ignore_eos
              and self.emitted >= self.min_tokens):
            return Piece(EOS, "")
        piece = self.script.piece(self.piece_index)
        self.piece_index += 1
        return piece

    def advance(self) -> dict | None:
        """Produce one token; return the chat delta it yields (None: nothing to stream for it)."""
        piece = self._next_piece()
        self.emitted += 1
        delta: dict | None = None
        if piece.kind == REASONING:
            self.reasoning.append(piece.text)
            self.reasoning_tokens += 1
            delta = {"reasoning": piece.text} if self.include_reasoning else None
        elif piece.kind == CONTENT:
            delta = self._content(piece.text)
        elif piece.tool_start is not None:
            index, name = piece.tool_start
            call_id = f"chatcmpl-tool-{uuid.uuid4().int & (2**64 - 1):016x}"
            self.tool_calls[index] = {"id": call_id, "name": name, "arguments": "", "complete": False}
            delta = {"tool_calls": [{"id": call_id, "type": "function", "index": index,
                                     "function": {"name": name}}]}
        elif piece.tool_args is not None:
            index, arguments = piece.tool_args
            self.tool_calls[index]["arguments"] += arguments
            self.tool_calls[index]["complete"] = piece.tool_end
            delta = {"tool_calls": [{"index": index, "function": {"arguments": arguments}}]}
        if self.finish_reason is None:
            if piece.kind == EOS:
                self.finish_reason = "stop"
            elif self.emitted >= self.max_tokens:
                self.finish_reason = "length"
        return delta

    def _content(self, text: str) -> dict | None:
        if self.stop:
            window = self.content_tail + text
            hits = [(window.find(s), s) for s in self.stop if s and window.find(s) >= 0]
            if hits:
                position, matched = min(hits)
                visible = max(0, position - len(self.content_tail))
                text = text[:visible] if position >= len(self.content_tail) else ""
                if position < len(self.content_tail):
                    kept = "".join(self.content)[:len("".join(self.content)) - len(self.content_tail) + position]
                    self.content = [kept]
                self.finish_reason, self.stop_reason = "stop", matched
            longest = max(len(s) for s in self.stop)
            self.content_tail = (self.content_tail + text)[-longest:]
        if text:
            self.content.append(text)
        return {"content": text} if text else None

    def content_text(self) -> str:
        return "".join(self.content)

    def reasoning_text(self) -> str:
        return "".join(self.reasoning)


# ----------------------------------------------------------------------------------------------------------------
# The engine. Each running request decodes at min(per-stream rate, capacity / number decoding): a virtual token
# clock V advances at that rate, and a request's k-th decode token is due when V reaches its start + k. Prefill
# (time to first token) is a per-request delay. Events are processed in time order, so token times are exact to
# the timer's wake-up, whatever the load; the scheduler admits at most max_num_seqs requests, the rest wait.
# ----------------------------------------------------------------------------------------------------------------

class Engine:
    def __init__(self, *, stream_rate: float, capacity: float, ttft: float, prefill_rate: float, max_num_seqs: int,
                 kv_tokens: int, metrics: Metrics, tick: float) -> None:
        self.loop = asyncio.get_running_loop()
        self.stream_rate, self.capacity, self.ttft, self.prefill_rate = stream_rate, capacity, ttft, prefill_rate
        self.max_num_seqs, self.kv_tokens, self.metrics, self.tick = max_num_seqs, kv_tokens, metrics, tick
        self.waiting: deque[Generation] = deque()
        self.prefilling: list[tuple[float, int, Generation]] = []
        self.decoding: list[tuple[float, int, Generation]] = []
        self.running = 0
        self.n_decoding = 0
        self.kv_used = 0
        self.v = 0.0
        self.v_time = self.loop.time()
        self.last_run = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.accepting = True
        self.idle = asyncio.Event()
        self.idle.set()

    # -- clock
    def rate(self) -> float:
        return min(self.stream_rate, self.capacity / self.n_decoding) if self.n_decoding else 0.0

    def _advance(self, when: float) -> None:
        if when > self.v_time:
            self.v += self.rate() * (when - self.v_time)
            self.v_time = when

    def _decode_time(self) -> float:
        while self.decoding and self.decoding[0][2].finished:
            heapq.heappop(self.decoding)
        if not self.decoding or not self.n_decoding:
            return math.inf
        return self.v_time + max(0.0, self.decoding[0][0] - self.v) / self.rate()

    def _prefill_time(self) -> float:
        while self.prefilling and self.prefilling[0][2].finished:
            heapq.heappop(self.prefilling)
        return self.prefilling[0][0] if self.prefilling else math.inf

    # -- requests
    def submit(self, generation: Generation) -> None:
        now = self.loop.time()
        generation.arrival = now
        if not self.accepting:  # shutting down: the engine core rejects new requests as aborted
            generation.state = "finished"
            generation.finish_reason = "abort"
            generation.sink.finish(generation, now)
            return
        generation.state = "waiting"
        self.waiting.append(generation)
        self.idle.clear()
        self._process(now)
        self._arm()

    def abort(self, generation: Generation) -> None:
        if generation.finished:
            return
        now = self.loop.time()
        self._process(now)
        if generation.state == "waiting":
            self.waiting.remove(generation)
        generation.finish_reason = "abort"
        self._finish(generation, now)
        self._arm()

    def abort_all(self) -> int:
        victims = [*self.waiting, *(g for _, _, g in self.prefilling), *(g for _, _, g in self.decoding)]
        victims = [g for g in victims if not g.finished]
        for generation in victims:
            self.abort(generation)
        return len(victims)

    @property
    def unfinished(self) -> int:
        return self.running + len(self.waiting)

    def kv_usage(self) -> float:
        return min(1.0, self.kv_used / self.kv_tokens) if self.kv_tokens else 0.0

    def _admit(self, now: float) -> None:
        while self.waiting and self.running < self.max_num_seqs:
            generation = self.waiting.popleft()
            generation.state, generation.admitted = "prefill", now
            self.running += 1
            self.kv_used += generation.prompt_tokens
            delay = self.ttft + (generation.prompt_tokens / self.prefill_rate if self.prefill_rate > 0 else 0.0)
            heapq.heappush(self.prefilling, (now + delay, generation.seq, generation))

    def _first_token(self, generation: Generation, when: float) -> None:
        generation.first_token = generation.last_token = when
        self.metrics.prompt_tokens += generation.prompt_tokens
        self.metrics.observe("vllm:time_to_first_token_seconds", when - generation.arrival)
        self._emit(generation, when)
        if not generation.finished:
            generation.state = "decode"
            self.n_decoding += 1
            generation.due = self.v + 1.0
            heapq.heappush(self.decoding, (generation.due, generation.seq, generation))

    def _decode_token(self, generation: Generation, when: float) -> None:
        self.metrics.observe("vllm:inter_token_latency_seconds", when - generation.last_token)
        generation.last_token = when
        self._emit(generation, when)
        if not generation.finished:
            generation.due += 1.0
            heapq.heappush(self.decoding, (generation.due, generation.seq, generation))

    def _emit(self, generation: Generation, when: float) -> None:
        delta = generation.advance()
        self.metrics.generation_tokens += 1
        self.kv_used += 1
        done = generation.finish_reason is not None
        if not generation.sink.token(generation, delta, when, done) and not done:
            generation.finish_reason, done = "abort", True  # the client went away
        if done:
            self._finish(generation, when)

    def _finish(self, generation: Generation, when: float) -> None:
        if generation.state in ("prefill", "decode"):
            self._advance(when)
            if generation.state == "decode":
                self.n_decoding -= 1
            self.running -= 1
            self.kv_used -= generation.prompt_tokens + generation.emitted
        generation.state = "finished"
        metrics = self.metrics
        metrics.success[generation.finish_reason or "abort"] += 1
        metrics.observe("vllm:e2e_request_latency_seconds", when - generation.arrival)
        if generation.admitted:
            metrics.observe("vllm:request_queue_time_seconds", generation.admitted - generation.arrival)
            metrics.observe("vllm:request_inference_time_seconds", when - generation.admitted)
        if generation.first_token:
            metrics.observe("vllm:request_prefill_time_seconds", generation.first_token - generation.admitted)
            metrics.observe("vllm:request_decode_time_seconds", when - generation.first_token)
            if generation.emitted > 1:
                metrics.observe("vllm:request_time_per_output_token_seconds",
                                (when - generation.first_token) / (generation.emitted - 1))
        metrics.observe("vllm:request_prompt_tokens", generation.prompt_tokens)
        metrics.observe("vllm:request_generation_tokens", generation.emitted)
        generation.sink.finish(generation, when)
        self._admit(when)
        if not self.unfinished:
            self.idle.set()

    # -- the event loop
    def _process(self, now: float) -> None:
        self._admit(now)
        while True:
            prefill_at, decode_at = self._prefill_time(), self._decode_time()
            when = min(prefill_at, decode_at)
            if when > now:
                break
            if prefill_at <= decode_at:
                _, _, generation = heapq.heappop(self.prefilling)
                self._advance(prefill_at)
                self._first_token(generation, prefill_at)
            else:
                _, _, generation = heapq.heappop(self.decoding)
                self._advance(max(decode_at, self.v_time))
                self._decode_token(generation, max(decode_at, self.v_time))
        self._advance(now)

    def _run(self) -> None:
        self.timer = None
        now = self.loop.time()
        self.last_run = now
        self._process(now)
        self._arm()

    def _arm(self) -> None:
        # Decode events are batched to one wake-up per tick; prefill completions wake the loop on time.
        when = min(self._prefill_time(), max(self._decode_time(), self.last_run + self.tick))
        if when == math.inf:
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
            return
        if self.timer is not None:
            if self.timer.when() <= when:
                return
            self.timer.cancel()
        self.timer = self.loop.call_at(when, self._run)
