#!/usr/bin/env python3
"""Stand-in for `vllm serve` in the vllm/vllm-openai-rocm image, serving DeepSeek V3.2 (test lab only).

It takes `vllm serve`'s arguments, refuses to start the way vLLM on ROCm does when a mandatory setting is missing,
takes a load time (shorter when the kernel cache is warm) before its port opens, and then answers vLLM's
OpenAI-compatible endpoints with vLLM's shapes: chat (plain and SSE), tool calls, reasoning, models, health,
version, metrics, and the API key on /v1. Tokens are produced at a per-stream rate under a total capacity, so
throughput saturates under concurrency like a real server. Standard library only: it runs in a minimal image.
The knobs are environment variables (see README.md).
"""

import argparse
import asyncio
import json
import os
import pathlib
import re
import signal
import sys
import time
import uuid

VERSION = os.environ.get("VLLM_STANDIN_VERSION", "0.33.0")
MODEL_ID = "deepseek-ai/DeepSeek-V3.2"


def env_float(name, default):
    return float(os.environ.get(name, default))


# ---------------------------------------------------------------------------------------------- arguments
def build_parser():
    parser = argparse.ArgumentParser(prog="vllm serve", add_help=True)
    parser.add_argument("model_tag", nargs="?")
    parser.add_argument("--model", default=None)
    parser.add_argument("--revision", default=None)
    parser.add_argument("--host", default=None)
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--served-model-name", nargs="+", default=None)
    parser.add_argument("--tensor-parallel-size", "-tp", type=int, default=1)
    parser.add_argument("--block-size", type=int, default=None)
    parser.add_argument("--quantization", "-q", default=None)
    parser.add_argument("--kv-cache-dtype", default="auto")
    parser.add_argument("--kv-transfer-config", default=None)
    parser.add_argument("--kv-offloading-size", type=float, default=None)
    parser.add_argument("--kv-offloading-backend", default=None)
    parser.add_argument("--tokenizer-mode", default="auto")
    parser.add_argument("--tool-call-parser", default=None)
    parser.add_argument("--enable-auto-tool-choice", action="store_true")
    parser.add_argument("--reasoning-parser", default=None)
    parser.add_argument("--max-model-len", type=int, default=163840)
    parser.add_argument("--max-num-seqs", type=int, default=256)
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.9)
    parser.add_argument("--trust-remote-code", action="store_true")
    parser.add_argument("--disable-log-requests", action="store_true")
    return parser


# ---------------------------------------------------------------------------------------------- start-up checks
def log(level, source, message):
    stamp = time.strftime("%m-%d %H:%M:%S")
    print(f"{level} {stamp} [{source}] {message}", flush=True)


def render_nodes(dev_root):
    dri = dev_root / "dri"
    return sorted(dri.glob("renderD*")) if dri.is_dir() else []


def hub_cache():
    if os.environ.get("HF_HUB_CACHE"):
        return pathlib.Path(os.environ["HF_HUB_CACHE"])
    return pathlib.Path(os.environ.get("HF_HOME", "/root/.cache/huggingface")) / "hub"


def weights_problem(model, revision):
    """Why the weights can't be loaded offline from the HF cache, or None."""
    repo_dir = hub_cache() / ("models--" + model.replace("/", "--"))
    revision = revision or "main"
    commit = revision
    if not re.fullmatch(r"[0-9a-f]{40}", revision):
        ref = repo_dir / "refs" / revision
        commit = ref.read_text().strip() if ref.is_file() else None
    snapshot = repo_dir / "snapshots" / commit if commit else None
    if snapshot is None or not (snapshot / "config.json").is_file():
        return ("huggingface_hub.errors.LocalEntryNotFoundError: Cannot find an appropriate cached snapshot folder "
                "for the specified revision on the local disk and outgoing traffic has been disabled. To enable "
                "repo look-ups and downloads online, pass 'local_files_only=False' as input.")
    index = snapshot / "model.safetensors.index.json"
    if not index.is_file():
        return f"FileNotFoundError: [Errno 2] No such file or directory: '{index}'"
    for shard in sorted(set(json.loads(index.read_text())["weight_map"].values())):
        path = snapshot / shard
        if not path.is_file() or path.stat().st_size == 0:
            return f"FileNotFoundError: [Errno 2] No such file or directory: '{path}'"
    return None


def startup_problem(args, environ):
    """(log lines, exit code) of the first reason vLLM on ROCm would not start, or None."""
    dev_root = pathlib.Path(environ.get("SIM_DEV_ROOT", "/dev"))
    renders = render_nodes(dev_root)
    if not (dev_root / "kfd").exists() or not renders:
        return ["RuntimeError: No HIP GPUs are available"], 1
    if args.kv_cache_dtype.startswith("fp8"):
        return ["ValueError: Selected backend AttentionBackendEnum.ROCM_AITER_MLA_SPARSE is not valid for this "
                "configuration. Reason: ['kv_cache_dtype not supported']",
                "ROCMAiterMLASparseBackend doesn't support fp8 kv_cache_dtype"], 1
    offloading = (args.kv_offloading_size is not None or args.kv_offloading_backend is not None
                  or "Offloading" in (args.kv_transfer_config or ""))
    if offloading:
        return ["KeyError: 'model.layers.0.self_attn.indexer.k_cache'"], 1
    if args.block_size != 1:
        return ["ValueError: Selected backend AttentionBackendEnum.ROCM_AITER_MLA_SPARSE is not valid for this "
                f"configuration. Reason: ['block_size {args.block_size} not supported']"], 1
    if args.tensor_parallel_size > len(renders):
        return [f"ValueError: The number of required GPUs ({args.tensor_parallel_size}) exceeds the total number "
                f"of available GPUs ({len(renders)}) in the placement group."], 1
    if environ.get("HF_HUB_OFFLINE") == "1":
        problem = weights_problem(args.model, args.revision)
        if problem:
            return [problem], 1
    if environ.get("VLLM_ROCM_USE_AITER") != "1":
        return ["AssertionError: Sparse attention indexer ROCm path is only supported on AITER. Please enable "
                "aiter with VLLM_ROCM_USE_AITER=1"], 1
    if environ.get("AITER_ENABLE_VSKIP", "1") != "0":
        return ["Memory access fault by GPU node-2 (Agent handle: 0x55d5c2a3e5d0) on address 0x7f2a3c000000. "
                "Reason: Page not present or supervisor privilege."], 134
    return None


# ---------------------------------------------------------------------------------------------- the model
TRAIN = re.compile(r"120\s*km.*2 hours.*180\s*km.*3 hours", re.S)


def words(text):
    return re.findall(r"\S+", text)


def reply_for(request):
    """(reasoning or None, content or None, tool call or None) the stand-in model answers."""
    messages = request.get("messages") or []
    prompt = " ".join(str(m.get("content") or "") for m in messages if isinstance(m, dict))
    thinking = bool((request.get("chat_template_kwargs") or {}).get("thinking"))
    tools = request.get("tools") or []
    if tools and request.get("tool_choice", "auto") != "none":
        function = tools[0].get("function", {})
        location = re.search(r"\bin ([A-Z][\w .'-]*?)[?.!]*$", prompt.strip())
        arguments = {"location": location.group(1)} if location else {}
        return None, None, {"name": function.get("name", "tool"), "arguments": json.dumps(arguments)}
    if TRAIN.search(prompt):
        reasoning = ("Total distance is 120 km + 180 km = 300 km. Total time is 2 h + 3 h = 5 h. "
                     "Average speed = 300 km / 5 h = 60 km/h.")
        return (reasoning if thinking else None), "The average speed is 60 km/h.", None
    reasoning = "The user greets me and asks who I am; I should introduce myself." if thinking else None
    return reasoning, "Hello! I am DeepSeek-V3.2, a large language model by DeepSeek. How can I help you today?", None


# ---------------------------------------------------------------------------------------------- engine
class Engine:
    """Decodes at a per-stream rate while the sum over streams stays under a total capacity."""

    def __init__(self, args):
        self.args = args
        self.per_stream = env_float("SIM_TOKENS_PER_SECOND_PER_STREAM", 50)
        self.capacity = env_float("SIM_MAX_TOKENS_PER_SECOND", 5000)
        self.ttft = env_float("SIM_TTFT_SECONDS", 0.05)
        self.running = 0
        self.waiting = 0
        self.slots = asyncio.Semaphore(args.max_num_seqs)
        self.counters = {"prompt_tokens": 0, "generation_tokens": 0, "success": 0}
        self.ttft_samples = []
        self.e2e_samples = []

    def token_interval(self):
        rate = min(self.per_stream, self.capacity / max(self.running, 1))
        return 1.0 / rate

    async def generate(self, pieces):
        """Yield each piece (a token) at the engine's pace; the first after the prefill time."""
        self.waiting += 1
        async with self.slots:
            self.waiting -= 1
            self.running += 1
            try:
                await asyncio.sleep(self.ttft)
                for index, piece in enumerate(pieces):
                    if index:
                        await asyncio.sleep(self.token_interval())
                    yield piece
            finally:
                self.running -= 1


def split_tokens(text):
    """The stand-in's tokenizer: a word with its following space is one token."""
    return re.findall(r"\S+\s*", text) if text else []


def completion_pieces(request, content):
    """The content tokens, padded or cut to max_tokens like a real decode."""
    tokens = split_tokens(content)
    max_tokens = request.get("max_completion_tokens") or request.get("max_tokens")
    finish = "stop"
    if max_tokens:
        if request.get("ignore_eos"):
            filler = split_tokens("and so on ") * (int(max_tokens) // 3 + 1)
            tokens = (tokens + filler)[: int(max_tokens)]
            finish = "length"
        elif len(tokens) > int(max_tokens):
            tokens, finish = tokens[: int(max_tokens)], "length"
    return tokens, finish


# ---------------------------------------------------------------------------------------------- HTTP
class HttpError(Exception):
    def __init__(self, status, message, kind="BadRequestError"):
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind

    def body(self):
        return {"error": {"message": self.message, "type": self.kind, "param": None, "code": self.status}}


REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
           500: "Internal Server Error"}


class Server:
    def __init__(self, args):
        self.args = args
        self.engine = Engine(args)
        self.api_key = args.api_key or os.environ.get("VLLM_API_KEY")
        self.served = (args.served_model_name or [args.model])[0]
        self.in_flight = 0
        self.created = int(time.time())

    # --- plumbing
    async def handle(self, reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {k.strip().lower(): v.strip() for k, v in
                           (line.split(":", 1) for line in lines[1:] if ":" in line)}
                length = int(headers.get("content-length", 0))
                body = await reader.readexactly(length) if length else b""
                self.in_flight += 1
                try:
                    keep = await self.route(method, target.split("?", 1)[0], headers, body, writer)
                finally:
                    self.in_flight -= 1
                if not keep or headers.get("connection", "").lower() == "close":
                    break
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    async def send(self, writer, status, payload=None, content_type="application/json"):
        body = b"" if payload is None else (
            payload.encode() if isinstance(payload, str) else json.dumps(payload).encode())
        head = (f"HTTP/1.1 {status} {REASONS.get(status, '')}\r\ncontent-type: {content_type}\r\n"
                f"content-length: {len(body)}\r\nserver: uvicorn\r\n\r\n")
        writer.write(head.encode() + body)
        await writer.drain()
        return True

    async def route(self, method, path, headers, body, writer):
        if (path.startswith("/v1") and self.api_key
                and headers.get("authorization", "") != f"Bearer {self.api_key}"):
            return await self.send(writer, 401, {"error": "Unauthorized"})
        try:
            if path == "/health":
                return await self.send(writer, 200, "", "application/json")
            if path == "/version":
                return await self.send(writer, 200, {"version": VERSION})
            if path == "/v1/models":
                return await self.send(writer, 200, self.models())
            if path == "/metrics":
                return await self.send(writer, 200, self.metrics(), "text/plain; version=0.0.4; charset=utf-8")
            if path == "/v1/chat/completions":
                if method != "POST":
                    raise HttpError(405, "Method Not Allowed", "MethodNotAllowed")
                return await self.chat(body, writer)
            raise HttpError(404, "Not Found", "NotFoundError")
        except HttpError as error:
            return await self.send(writer, error.status, error.body())

    # --- endpoints
    def models(self):
        return {"object": "list", "data": [{
            "id": self.served, "object": "model", "created": self.created, "owned_by": "vllm",
            "root": self.args.model, "parent": None, "max_model_len": self.args.max_model_len,
            "permission": [{"id": f"modelperm-{uuid.uuid4().hex}", "object": "model_permission",
                            "created": self.created, "allow_create_engine": False, "allow_sampling": True,
                            "allow_logprobs": True, "allow_search_indices": False, "allow_view": True,
                            "allow_fine_tuning": False, "organization": "*", "group": None,
                            "is_blocking": False}]}]}

    def metrics(self):
        engine, name = self.engine, self.served
        labels = f'engine="0",model_name="{name}"'
        lines = [
            f"vllm:num_requests_running{{{labels}}} {engine.running}",
            f"vllm:num_requests_waiting{{{labels}}} {engine.waiting}",
            f"vllm:kv_cache_usage_perc{{{labels}}} {min(engine.running / self.args.max_num_seqs, 1.0)}",
            f"vllm:prompt_tokens_total{{{labels}}} {engine.counters['prompt_tokens']}",
            f"vllm:generation_tokens_total{{{labels}}} {engine.counters['generation_tokens']}",
            f'vllm:request_success_total{{{labels},finished_reason="stop"}} {engine.counters["success"]}',
        ]
        for metric, samples in (("time_to_first_token_seconds", engine.ttft_samples),
                                ("e2e_request_latency_seconds", engine.e2e_samples)):
            lines.append(f"vllm:{metric}_count{{{labels}}} {len(samples)}")
            lines.append(f"vllm:{metric}_sum{{{labels}}} {sum(samples)}")
        return "\n".join(lines) + "\n"

    async def chat(self, body, writer):
        try:
            request = json.loads(body or b"{}")
        except json.JSONDecodeError as error:
            raise HttpError(400, f"JSON decode error: {error}") from error
        model = request.get("model") or self.served
        if model != self.served:
            raise HttpError(404, f"The model `{model}` does not exist.", "NotFoundError")
        if self.args.tokenizer_mode != "deepseek_v32":
            raise HttpError(400, "As of transformers v4.44, default chat template is no longer allowed, so you must "
                                 "provide a chat template if the tokenizer does not define one.")
        if request.get("tools") and request.get("tool_choice", "auto") == "auto" and not (
                self.args.enable_auto_tool_choice and self.args.tool_call_parser):
            raise HttpError(400, '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser '
                                 "to be set")
        reasoning, content, tool_call = reply_for(request)
        if not self.args.reasoning_parser and reasoning:
            content, reasoning = f"{reasoning}</think>{content}", None
        prompt_tokens = sum(len(words(str(m.get("content") or ""))) for m in request.get("messages") or []) + 8
        started = time.monotonic()
        request_id = f"chatcmpl-{uuid.uuid4().hex}"
        if tool_call:
            pieces, finish = [("tool", tool_call)], "tool_calls"
        else:
            content_tokens, finish = completion_pieces(request, content)
            pieces = [("reasoning", t) for t in split_tokens(reasoning)] + [("content", t) for t in content_tokens]
        if request.get("stream"):
            return await self.stream(writer, request, request_id, pieces, finish, prompt_tokens, started)
        out = {"reasoning": "", "content": "", "tool": None}
        first = None
        async for kind, piece in self.engine.generate(pieces):
            first = first or time.monotonic()
            if kind == "tool":
                out["tool"] = piece
            else:
                out[kind] += piece
        self.account(prompt_tokens, len(pieces), started, first)
        message = {"role": "assistant", "content": out["content"] or None, "refusal": None, "annotations": None,
                   "audio": None, "function_call": None, "tool_calls": [], "reasoning": out["reasoning"] or None}
        if out["tool"]:
            message["tool_calls"] = [{"id": f"chatcmpl-tool-{uuid.uuid4().hex[:16]}", "type": "function",
                                      "function": out["tool"]}]
        usage = {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens + len(pieces),
                 "completion_tokens": len(pieces), "prompt_tokens_details": None}
        return await self.send(writer, 200, {
            "id": request_id, "object": "chat.completion", "created": int(time.time()), "model": self.served,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish,
                         "stop_reason": None}],
            "service_tier": None, "system_fingerprint": None, "usage": usage, "prompt_logprobs": None,
            "kv_transfer_params": None})

    def account(self, prompt_tokens, completion_tokens, started, first):
        engine = self.engine
        engine.counters["prompt_tokens"] += prompt_tokens
        engine.counters["generation_tokens"] += completion_tokens
        engine.counters["success"] += 1
        engine.ttft_samples.append((first or time.monotonic()) - started)
        engine.e2e_samples.append(time.monotonic() - started)

    async def stream(self, writer, request, request_id, pieces, finish, prompt_tokens, started):
        head = ("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
                "transfer-encoding: chunked\r\nserver: uvicorn\r\n\r\n")
        writer.write(head.encode())

        async def event(payload):
            data = f"data: {payload if isinstance(payload, str) else json.dumps(payload)}\n\n".encode()
            writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            await writer.drain()

        def chunk(delta, finish_reason=None):
            return {"id": request_id, "object": "chat.completion.chunk", "created": int(time.time()),
                    "model": self.served, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                                       "finish_reason": finish_reason}]}

        first = None
        await event(chunk({"role": "assistant", "content": ""}))
        async for kind, piece in self.engine.generate(pieces):
            first = first or time.monotonic()
            if kind == "tool":
                await event(chunk({"tool_calls": [{"index": 0, "id": f"chatcmpl-tool-{uuid.uuid4().hex[:16]}",
                                                   "type": "function", "function": piece}]}))
            else:
                await event(chunk({kind: piece}))
        await event(chunk({}, finish))
        if (request.get("stream_options") or {}).get("include_usage"):
            usage_chunk = chunk({})
            usage_chunk["choices"] = []
            usage_chunk["usage"] = {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens + len(pieces),
                                    "completion_tokens": len(pieces)}
            await event(usage_chunk)
        await event("[DONE]")
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        self.account(prompt_tokens, len(pieces), started, first)
        return True


# ---------------------------------------------------------------------------------------------- start-up
async def load(args):
    """Weight loading and, on a cold kernel cache, the FP8 BMM warm-up, as vLLM logs them."""
    log("INFO", "model_runner.py:1651", "Starting to load model %s..." % args.model)
    load_seconds = env_float("SIM_LOAD_SECONDS", 3)
    await asyncio.sleep(load_seconds)
    log("INFO", "default_loader.py:272", f"Loading weights took {load_seconds:.2f} seconds")
    cache = pathlib.Path(os.environ.get("SIM_KERNEL_CACHE_DIR", "/root/.triton"))
    marker = cache / "standin-fp8-bmm-kernels"
    if marker.exists():
        log("INFO", "rocm_aiter_fp8.py:88", "FP8 BMM kernels found in the kernel cache; skipping warm-up")
    else:
        warmup = env_float("SIM_WARMUP_SECONDS", 2)
        log("INFO", "rocm_aiter_fp8.py:92", "Pre-compiling FP8 BMM kernels (first run only)...")
        await asyncio.sleep(warmup)
        cache.mkdir(parents=True, exist_ok=True)
        marker.write_text("compiled by the vLLM stand-in\n")
        log("INFO", "rocm_aiter_fp8.py:97", f"FP8 BMM warm-up took {warmup:.2f} seconds")


async def serve(args):
    await load(args)
    server = Server(args)
    listener = await asyncio.start_server(server.handle, args.host or "0.0.0.0", args.port, limit=1 << 20)
    log("INFO", "api_server.py:1920", f"Starting vLLM API server 0 on http://{args.host or '0.0.0.0'}:{args.port}")
    log("INFO", "launcher.py:46", "Route: /v1/chat/completions, Methods: POST")
    print("INFO:     Application startup complete.", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    print("INFO:     Shutting down", flush=True)
    listener.close()
    deadline = time.monotonic() + env_float("SIM_SHUTDOWN_GRACE_SECONDS", 30)
    while server.in_flight and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    print("INFO:     Application shutdown complete.", flush=True)


def main(argv):
    if not argv or argv[0] != "serve":
        print("usage: vllm [-h] [-v] {chat,complete,serve,bench,collect-env,run-batch} ...", file=sys.stderr)
        return 2
    args = build_parser().parse_args(argv[1:])
    args.model = args.model or args.model_tag or "Qwen/Qwen3-0.6B"
    log("INFO", "api_server.py:1850", f"vLLM API server version {VERSION}")
    log("INFO", "utils.py:326", f"non-default args: {vars(args)}".replace(str(args.api_key), "***")
        if args.api_key else f"non-default args: {vars(args)}")
    problem = startup_problem(args, os.environ)
    if problem:
        lines, code = problem
        for line in lines:
            log("ERROR", "core.py:708", line)
        return code
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
