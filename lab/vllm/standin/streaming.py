"""Where a generation's tokens go: an SSE stream of chunks to the client, or collected for one JSON response."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from .engine import Generation
from .http_protocol import JSON_DUMPS

if TYPE_CHECKING:
    from .app import App


class StreamSink:
    """Turns engine tokens into SSE chunks on the client's transport (chat or text completion)."""

    def __init__(self, app: App, writer: asyncio.StreamWriter, *, chat: bool, rid: str, model: str,
                 include_usage: bool, continuous_usage: bool, named_tool: bool) -> None:
        self.app, self.writer, self.chat = app, writer, chat
        self.base = {"id": rid, "object": "chat.completion.chunk" if chat else "text_completion",
                     "created": int(time.time()), "model": model}
        self.include_usage, self.continuous_usage, self.named_tool = include_usage, continuous_usage, named_tool
        self.done: asyncio.Future = asyncio.get_running_loop().create_future()
        self.started = False
        self.final_delta: dict | None = None

    def _send(self, payload: dict | str) -> bool:
        if self.writer.transport.is_closing():
            return False
        data = payload if isinstance(payload, str) else JSON_DUMPS(payload)
        frame = f"data: {data}\n\n".encode()
        self.writer.write(b"%x\r\n%s\r\n" % (len(frame), frame))
        return True

    def _usage(self, generation: Generation) -> dict:
        usage = {"prompt_tokens": generation.prompt_tokens,
                 "total_tokens": generation.prompt_tokens + generation.emitted,
                 "completion_tokens": generation.emitted}
        if self.chat and self.app.deployment.reasoning_parser:
            usage["completion_tokens_details"] = {"reasoning_tokens": generation.reasoning_tokens}
        return usage

    def _chunk(self, choice: dict, generation: Generation, *, final: bool) -> dict:
        chunk = {**self.base, "choices": [choice]}
        if self.continuous_usage:
            chunk["usage"] = self._usage(generation)
        if final and not self.include_usage and self.app.deployment.fingerprint:
            chunk["system_fingerprint"] = self.app.deployment.fingerprint
        chunk["kv_transfer_params"] = None
        return chunk

    def _open(self, generation: Generation) -> bool:
        """The first chunk carries the role (chat) once the engine reports the request's first output."""
        self.started = True
        if not self.chat:
            return True
        first = {**self.base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                           "logprobs": None, "finish_reason": None}]}
        if self.continuous_usage:
            first["usage"] = {"prompt_tokens": generation.prompt_tokens, "total_tokens": generation.prompt_tokens,
                              "completion_tokens": 0}
            if self.app.deployment.reasoning_parser:
                first["usage"]["completion_tokens_details"] = {"reasoning_tokens": 0}
        first.update(prompt_token_ids=None, prompt_text=None)
        return self._send(first)

    def token(self, generation: Generation, delta: dict | None, when: float, done: bool) -> bool:
        if not self.started and not self._open(generation):
            return False
        if done:
            self.final_delta = delta  # finish() sends it with the finish reason
            return True
        if self.chat:
            if delta is None:
                return not self.writer.transport.is_closing()
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None, "token_ids": None}
        else:
            choice = {"index": 0, "text": (delta or {}).get("content", ""), "logprobs": None,
                      "finish_reason": None, "stop_reason": None, "prompt_token_ids": None, "token_ids": None,
                      "weight_versions": None}
        return self._send(self._chunk(choice, generation, final=False))

    def finish(self, generation: Generation, when: float) -> None:
        if not self.writer.transport.is_closing():
            if not self.started:
                self._open(generation)
            last = self.final_delta or {}
            if self.chat:
                choice = {"index": 0, "delta": last, "logprobs": None,
                          "finish_reason": finish_reason_for(generation, self.named_tool),
                          "stop_reason": generation.stop_reason, "token_ids": None, "weight_versions": None}
            else:
                choice = {"index": 0, "text": last.get("content", ""), "logprobs": None,
                          "finish_reason": generation.finish_reason, "stop_reason": generation.stop_reason,
                          "prompt_token_ids": None, "token_ids": None, "weight_versions": None}
            self._send(self._chunk(choice, generation, final=True))
            if self.include_usage:
                usage_chunk = {**self.base, "choices": [], "usage": self._usage(generation)}
                if self.app.deployment.fingerprint:
                    usage_chunk["system_fingerprint"] = self.app.deployment.fingerprint
                self._send(usage_chunk)
            self._send("[DONE]")
            self.writer.write(b"0\r\n\r\n")
        if not self.done.done():
            self.done.set_result(None)


class CollectSink:
    """A non-streaming request: nothing to send until the end."""

    def __init__(self) -> None:
        self.done: asyncio.Future = asyncio.get_running_loop().create_future()

    def token(self, generation: Generation, delta: dict | None, when: float, done: bool) -> bool:
        return True

    def finish(self, generation: Generation, when: float) -> None:
        if not self.done.done():
            self.done.set_result(None)


def finish_reason_for(generation: Generation, named_tool: bool) -> str:
    """serve/utils/tool_calls_utils.py resolve_finish_reason."""
    reason = generation.finish_reason or "stop"
    if generation.tool_calls and reason == "stop" and not named_tool:
        return "tool_calls"
    return reason
