"""The OpenAI-compatible API (entrypoints/openai/*, entrypoints/serve/*): the API key, the request checks in
vLLM's order, and every route's answer."""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import random
import sys
import time
import uuid
from urllib.parse import quote, unquote

from .engine import Engine, Generation
from .http_protocol import (JSON_DUMPS, HttpRequest, Response, error_response, response_head, response_summary,
                            validation_error)
from .log import Frame, Proc, VllmLog, print_traceback
from .metrics import Metrics
from .replies import Filler, Reply, Script, compose_reply
from .routes import DOCS_PAGES, DOCS_ROUTES, GUARDED_PREFIXES, SWAGGER_CDN, Deployment, served_routes
from .streaming import CollectSink, StreamSink, finish_reason_for
from .text import VOCAB_SIZE, chat_prompt_tokens, estimate_tokens, invented_token_ids, message_text, token_piece
from .validation import (VLLM_MAX_N_SEQUENCES, chat_field_errors, completion_field_errors, completion_prompt_error,
                         detokenize_errors, prompt_shape_valid, requested_output, scoring_errors, tokenize_errors,
                         unsupported_media_type, vllm_validation_error)

SCALE_FAILED_LOG = "api_router.py:80"  # serve/elastic_ep/api_router.py logger.error("Scale failed: %s", e)
EMPTY_CONVERSATION_FRAMES: list[Frame] = [
    ("renderers/online_renderer.py", 821, "preprocess_chat",
     "(conversation,), (engine_input,) = await renderer.render_chat_async("),
    ("renderers/base.py", 1403, "render_chat_async", "for conv, prompt in await asyncio.gather(*rendered):"),
    ("renderers/deepseek_v32.py", 75, "render_messages_async", "prompt_raw = await self._apply_chat_template_async("),
    ("tokenizers/deepseek_v32.py", 42, "apply_chat_template", 'drop_thinking = messages[-1]["role"] == "user"'),
]
CHAT_TEMPLATE_ERROR = ("As of transformers v4.44, default chat template is no longer allowed, so you must provide a "
                       "chat template if the tokenizer does not define one.")


def random_id() -> str:
    return f"{uuid.uuid4().int & (2**64 - 1):016x}"  # vllm.utils.random_uuid


class App:
    def __init__(self, deployment: Deployment, engine: Engine, metrics: Metrics, log: VllmLog, api: Proc) -> None:
        self.deployment, self.engine, self.metrics, self.log, self.api = deployment, engine, metrics, log, api
        self.routes = served_routes(deployment)

    # -- entry point from the HTTP layer; returns None when the handler wrote a streaming response itself
    async def handle(self, request: HttpRequest, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> Response | int:
        path = unquote(request.path.split("?", 1)[0])  # uvicorn decodes the path; routing and the key check see that
        if (self.deployment.api_keys and request.method != "OPTIONS" and path.startswith(GUARDED_PREFIXES)
                and not self._authorized(request.headers.get("authorization", ""))):
            return Response.json(401, {"error": "Unauthorized"})
        if path.startswith("/metrics"):  # prometheus_client's app is also mounted there: any suffix, any method
            body = self.metrics.render(self.engine.running, len(self.engine.waiting), self.engine.kv_usage())
            return Response(200, body.encode(), "text/plain; version=0.0.4; charset=utf-8")
        methods = self.routes.get(path)
        if methods is None:
            return self._unrouted(request, path)
        method = "GET" if request.method == "HEAD" else request.method
        if method not in methods:
            return Response(405, JSON_DUMPS({"detail": "Method Not Allowed"}).encode(), "application/json",
                            [("allow", ", ".join(methods))])
        if path == "/health":
            return Response(200)
        if path == "/version":
            return Response.json(200, {"version": self.deployment.release.version})
        if path == "/v1/models":
            return Response.json(200, self._models())
        if path not in ("/v1/chat/completions", "/v1/completions"):
            return await self._serve_more(request, path, reader, writer)
        body = self._json_body(request)
        if isinstance(body, Response):
            return body
        if path == "/v1/chat/completions":
            return await self._chat(request, body, reader, writer)
        return await self._completion(request, body, reader, writer)

    def _authorized(self, header: str) -> bool:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer":
            return False
        digest = hashlib.sha256(token.encode()).digest()
        return any(hashlib.sha256(key.encode()).digest() == digest for key in self.deployment.api_keys)

    def _models(self) -> dict:
        created = int(time.time())
        return {"object": "list", "data": [
            {"id": name, "object": "model", "created": created, "owned_by": "vllm", "root": self.deployment.model,
             "parent": None, "max_model_len": self.deployment.max_model_len,
             "permission": [{"id": f"modelperm-{random_id()}", "object": "model_permission", "created": created,
                             "allow_create_engine": False, "allow_sampling": True, "allow_logprobs": True,
                             "allow_search_indices": False, "allow_view": True, "allow_fine_tuning": False,
                             "organization": "*", "group": None, "is_blocking": False}]}
            for name in self.deployment.served_names]}

    @staticmethod
    def _json_body(request: HttpRequest) -> dict | Response:
        """FastAPI reads the JSON body, then vLLM's validate_json_request checks the media type; pydantic checks
        the shape (api_utils.py, handlers/validation.py)."""
        media_type = request.headers.get("content-type", "").lower().split(";", 1)[0].strip()
        parsed = None
        if request.body and (media_type == "application/json" or media_type.endswith("+json")):
            try:
                parsed = json.loads(request.body)
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                position = getattr(error, "pos", getattr(error, "start", 0))
                reason = getattr(error, "msg", "Expecting value")
                return validation_error([{"type": "json_invalid", "loc": ("body", position),
                                          "msg": "JSON decode error", "input": {}, "ctx": {"error": reason}}])
        if media_type != "application/json":
            return validation_error(["Unsupported Media Type: Only 'application/json' is allowed"])
        if parsed is None:
            return validation_error([{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}])
        if not isinstance(parsed, dict):
            return validation_error([{"type": "model_attributes_type", "loc": ("body",),
                                      "msg": "Input should be a valid dictionary or object to extract fields from",
                                      "input": parsed}])
        return parsed

    def _check_model(self, body: dict) -> Response | None:
        """The chat route logs the refusal (chat_completion/serving.py render_chat_request); the others do not."""
        response = self._unknown_model(body)
        if response is not None:
            self.log.error(self.api, "serving.py:280", f"Error with model {response_summary(response)}")
        return response

    def _unknown_model(self, body: dict) -> Response | None:
        model = body.get("model")
        if model and model not in self.deployment.served_names:
            return error_response(
                f"The model `{model}` does not exist. Valid aliases: {', '.join(self.deployment.served_names)}.",
                "NotFoundError", 404, "model")
        return None

    def _output_budget_error(self, body: dict, *, chat: bool) -> Response | None:
        """TokenizeParams.__post_init__ (renderers/params.py), built from the request before the prompt is rendered:
        the output alone may not exceed the context. Output plus prompt beyond it is only clamped, later."""
        param, requested = requested_output(body, chat)
        max_len = self.deployment.max_model_len
        if requested is not None and requested > max_len:
            return vllm_validation_error(f"{param}={requested} cannot be greater than max_model_len={max_len}. "
                                         "Please request fewer output tokens.", param, requested)
        return None

    def _empty_conversation_error(self, messages: list, tools: list | None) -> Response | None:
        """DeepSeek V3.2's encoder reads messages[-1] (tokenizers/deepseek_v32.py apply_chat_template): without
        messages or tools that is an IndexError, which the catch-all handler answers 500 and uvicorn logs."""
        if messages or tools or self.deployment.tokenizer_mode != "deepseek_v32":
            return None
        sys.stderr.write("ERROR:    Exception in ASGI application\n")
        print_traceback(EMPTY_CONVERSATION_FRAMES, "IndexError: list index out of range")
        return error_response("list index out of range", "InternalServerError", 500)

    def _generation_limits(self, body: dict, prompt_tokens: int, *, chat: bool) -> int | Response:
        """After rendering, in vLLM's order: the prompt against the context (renderers/params.py _token_len_check),
        max_tokens clamped to what the context leaves (serve/utils/api_utils.py get_max_tokens), then
        SamplingParams._verify_args (sampling_params.py) on n, temperature, top_p and the clamped max_tokens."""
        max_len = self.deployment.max_model_len
        if prompt_tokens > max_len:
            return vllm_validation_error(
                f"This model's maximum context length is {max_len} tokens. However, your prompt contains "
                f"{prompt_tokens} input tokens, which exceeds this limit even without any output tokens. Please "
                "reduce the length of the input prompt.", "input_tokens", prompt_tokens)
        requested = requested_output(body, chat)[1]
        max_tokens = max_len - prompt_tokens if requested is None else min(max_len - prompt_tokens, requested)
        n = 1 if body.get("n") is None else body["n"]
        if n < 1:
            return vllm_validation_error(f"n must be at least 1, got {n}.")
        if n > VLLM_MAX_N_SEQUENCES:
            return vllm_validation_error(f"n must be at most {VLLM_MAX_N_SEQUENCES}, got {n}. To increase this "
                                         "limit, set the VLLM_MAX_N_SEQUENCES environment variable.")
        temperature, top_p = body.get("temperature"), body.get("top_p")
        if temperature is not None and not math.isfinite(temperature):
            return vllm_validation_error(f"temperature must be a finite number, got {temperature}.", "temperature",
                                         temperature)
        if temperature is not None and temperature < 0:
            return vllm_validation_error(f"temperature must be non-negative, got {temperature}.", "temperature",
                                         temperature)
        if temperature is not None and temperature > 2:
            return vllm_validation_error(f"temperature must be in [0, 2], got {temperature}.", "temperature",
                                         temperature)
        if top_p is not None and not 0 < top_p <= 1:
            return vllm_validation_error(f"top_p must be in (0, 1], got {top_p}.", "top_p", top_p)
        if max_tokens < 1:
            return vllm_validation_error(f"max_tokens must be at least 1, got {max_tokens}.", "max_tokens",
                                         max_tokens)
        if n > 1 and temperature is not None and temperature < 1e-5:
            return vllm_validation_error(f"n must be 1 when using greedy sampling, got {n}.")
        if n != 1:
            return error_response("n > 1 is not simulated by the vLLM stand-in")
        return max_tokens

    @staticmethod
    def _seed(body: dict, text: str) -> int:
        return int(hashlib.sha256(f"{body.get('seed')}|{text}".encode()).hexdigest()[:12], 16)

    def _stop(self, body: dict) -> list[str]:
        stop = body.get("stop") or []
        return [stop] if isinstance(stop, str) else [item for item in stop if isinstance(item, str)]

    async def _chat(self, request: HttpRequest, body: dict, reader, writer) -> Response | int:
        if errors := chat_field_errors(body):
            return validation_error(errors)
        messages = [m for m in body["messages"] if isinstance(m, dict)]
        if (error := self._check_model(body)) is not None:
            return error
        tools = body.get("tools") or None
        tool_choice = body.get("tool_choice", "auto" if tools else "none")
        deployment = self.deployment
        if tool_choice not in (None, "none") and not deployment.auto_tools:
            # renderers/online_renderer.py render_chat: tool parsing unavailable
            if tool_choice == "auto":
                return error_response('"auto" tool choice requires --enable-auto-tool-choice and '
                                      "--tool-call-parser to be set")
            described = (f'function "{(tool_choice.get("function") or {}).get("name")}"'
                         if isinstance(tool_choice, dict) else f'"{tool_choice}"')
            return error_response(f"tool_choice={described} requires --tool-call-parser to be set")
        if (error := self._output_budget_error(body, chat=True)) is not None:
            return error
        error, prompt_tokens, thinking = self._chat_prompt(body, messages, tools)
        if error is not None:
            return error
        max_tokens = self._generation_limits(body, prompt_tokens, chat=True)
        if isinstance(max_tokens, Response):
            return max_tokens
        use_tools = tool_choice not in (None, "none") and deployment.auto_tools
        last_user = next((message_text(m) for m in reversed(messages) if m.get("role") == "user"), "")
        reply = compose_reply(messages, tools, tool_choice, use_tools, deployment.garbled,
                              self._seed(body, last_user))
        splits = deployment.reasoning_parser in ("deepseek_v3", "deepseek_r1")
        script = Script(reply, thinking=thinking, splits_reasoning=splits, seed=self._seed(body, last_user))
        rid = "chatcmpl-" + (request.headers.get("x-request-id") or body.get("request_id") or random_id())
        return await self._run(request, body, reader, writer, chat=True, rid=rid, script=script,
                               prompt_tokens=prompt_tokens, max_tokens=max_tokens,
                               include_reasoning=body.get("include_reasoning", True) is not False,
                               named_tool=isinstance(tool_choice, dict))

    def _chat_prompt(self, body: dict, messages: list, tools) -> tuple[Response | None, int, bool]:
        """The chat template's checks as vLLM's chat endpoint makes them, then the prompt's token count and
        whether the template thinks: (error response, 0, False) or (None, tokens, thinking)."""
        deployment = self.deployment
        if not deployment.has_chat_template and not (body.get("chat_template")
                                                     and deployment.trust_request_chat_template):
            return error_response(CHAT_TEMPLATE_ERROR), 0, False
        if (error := self._empty_conversation_error(messages, tools)) is not None:
            return error, 0, False
        kwargs = {**deployment.default_chat_template_kwargs, **(body.get("chat_template_kwargs") or {})}
        thinking = bool(kwargs.get("thinking") or kwargs.get("enable_thinking"))
        return None, chat_prompt_tokens(messages, tools, thinking), thinking

    async def _completion(self, request: HttpRequest, body: dict, reader, writer) -> Response | int:
        if (error := completion_prompt_error(body)) is not None:
            return error
        if errors := completion_field_errors(body):
            return validation_error(errors)
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1:
            prompt = prompt[0]
        if isinstance(prompt, list) and all(isinstance(item, int) for item in prompt):
            prompt_tokens, text = len(prompt), " ".join(map(str, prompt))
        elif isinstance(prompt, str):
            prompt_tokens, text = 1 + estimate_tokens(prompt), prompt
        else:
            return error_response("Several prompts in one request are not simulated by the vLLM stand-in")
        if (error := self._unknown_model(body)) is not None:
            return error
        if (error := self._output_budget_error(body, chat=False)) is not None:
            return error
        max_tokens = self._generation_limits(body, prompt_tokens, chat=False)
        if isinstance(max_tokens, Response):
            return max_tokens
        seed = self._seed(body, text)
        reply = Reply(reasoning="", content=Filler(seed).text(Filler(seed).rng.randint(40, 200)),
                      garbled=self.deployment.garbled)
        script = Script(reply, thinking=False, splits_reasoning=False, seed=seed)
        rid = "cmpl-" + (request.headers.get("x-request-id") or body.get("request_id") or random_id())
        return await self._run(request, body, reader, writer, chat=False, rid=rid, script=script,
                               prompt_tokens=prompt_tokens, max_tokens=max_tokens, include_reasoning=False,
                               named_tool=False)

    async def _run(self, request: HttpRequest, body: dict, reader, writer, *, chat: bool, rid: str,
                   script: Script, prompt_tokens: int, max_tokens: int, include_reasoning: bool,
                   named_tool: bool) -> Response | int:
        stream = bool(body.get("stream"))
        options = body.get("stream_options") or {}
        include_usage = stream and bool(options.get("include_usage"))
        sink = (StreamSink(self, writer, chat=chat, rid=rid, model=self.deployment.served_names[0],
                           include_usage=include_usage,
                           continuous_usage=include_usage and bool(options.get("continuous_usage_stats")),
                           named_tool=named_tool) if stream else CollectSink())
        generation = Generation(rid=rid, prompt_tokens=prompt_tokens, max_tokens=max_tokens, script=script,
                                stop=self._stop(body), ignore_eos=bool(body.get("ignore_eos")),
                                min_tokens=int(body.get("min_tokens") or 0), include_reasoning=include_reasoning,
                                sink=sink)
        if self.deployment.log_requests:
            self.log.info(self.api, "async_llm.py:415", f"Added request {rid}.")
        if stream:
            writer.write(response_head(200, [("content-type", "text/event-stream; charset=utf-8"),
                                             ("transfer-encoding", "chunked")]))
        self.engine.submit(generation)
        await self._wait(sink.done, generation, reader)
        if stream:
            return 200
        return Response.json(200, self._full_response(generation, chat=chat, named_tool=named_tool))

    async def _wait(self, done: asyncio.Future, generation: Generation, reader: asyncio.StreamReader) -> None:
        """Wait for the request, aborting it if the client disconnects (api_utils.py with_cancellation)."""
        gone = asyncio.ensure_future(reader.read(1))
        try:
            finished, _ = await asyncio.wait({done, gone}, return_when=asyncio.FIRST_COMPLETED)
            if done not in finished:
                self.engine.abort(generation)
                await done
        finally:
            gone.cancel()

    def _full_response(self, generation: Generation, *, chat: bool, named_tool: bool) -> dict:
        usage = {"prompt_tokens": generation.prompt_tokens,
                 "total_tokens": generation.prompt_tokens + generation.emitted,
                 "completion_tokens": generation.emitted, "prompt_tokens_details": None}
        if not chat:
            usage["completion_tokens_details"] = None
            choice = {"index": 0, "text": generation.content_text(), "logprobs": None,
                      "finish_reason": generation.finish_reason, "stop_reason": generation.stop_reason,
                      "token_ids": None, "prompt_logprobs": None, "prompt_token_ids": None, "routed_experts": None,
                      "weight_versions": None}
            return {"id": generation.rid, "object": "text_completion", "created": int(time.time()),
                    "model": self.deployment.served_names[0], "choices": [choice], "service_tier": None,
                    "system_fingerprint": self.deployment.fingerprint, "usage": usage,
                    "kv_transfer_params": None, "ec_transfer_params": None, "metrics": None}
        usage["completion_tokens_details"] = (
            {"reasoning_tokens": generation.reasoning_tokens} if self.deployment.reasoning_parser else None)
        calls = [{"id": call["id"], "type": "function", "function": {"name": call["name"],
                                                                     "arguments": call["arguments"]}}
                 for _, call in sorted(generation.tool_calls.items()) if call["complete"]]
        content = generation.content_text()
        message = {"role": "assistant", "content": content if content or not calls else None, "refusal": None,
                   "annotations": None, "audio": None, "function_call": None}
        if calls or not self.deployment.release.omits_empty_tool_calls:
            message["tool_calls"] = calls
        message["reasoning"] = (generation.reasoning_text() or None) if generation.include_reasoning else None
        choice = {"index": 0, "message": message, "logprobs": None,
                  "finish_reason": finish_reason_for(generation, named_tool), "stop_reason": generation.stop_reason,
                  "token_ids": None, "routed_experts": None, "weight_versions": None}
        return {"id": generation.rid, "object": "chat.completion", "created": int(time.time()),
                "model": self.deployment.served_names[0], "choices": [choice], "service_tier": None,
                "system_fingerprint": self.deployment.fingerprint, "usage": usage, "prompt_logprobs": None,
                "prompt_token_ids": None, "prompt_text": None, "kv_transfer_params": None,
                "ec_transfer_params": None, "metrics": None}


    # -- the routes outside the OpenAI API: serve/*, SageMaker's, generative scoring and FastAPI's pages
    def _unrouted(self, request: HttpRequest, path: str) -> Response:
        """Starlette's router redirects (307) to the path without (with) its trailing slash when that one has a
        route (redirect_slashes); otherwise FastAPI's 404."""
        other = path.rstrip("/") if path.endswith("/") else path + "/"
        if other not in self.routes:
            return Response.json(404, {"detail": "Not Found"})
        query = request.path.partition("?")[2]
        host = request.headers.get("host")
        url = (f"http://{host}" if host else "") + other + (f"?{query}" if query else "")
        return Response(307, headers=[("location", quote(url, safe=":/%#?=@[]!$&'()*+,;~"))])

    async def _serve_more(self, request: HttpRequest, path: str, reader, writer) -> Response | int:
        if path == "/ping":  # serve/sagemaker/api_router.py: /health under SageMaker's name, GET and POST
            return Response(200)
        if path == "/load":  # serve/instrumentator/basic.py: counted only with --enable-server-load-tracking
            return Response.json(200, {"server_load": self.engine.unfinished if self.deployment.server_load_tracking
                                       else 0})
        if path == "/kv_event_sources":  # no --kv-events-config: no publisher to report
            return Response.json(200, {})
        if path == "/is_scaling_elastic_ep":  # no external coordinator: the process-local state, idle
            return Response.json(200, {"is_scaling_elastic_ep": False, "phase": "idle", "epoch": None, "error": None,
                                       "requested_data_parallel_size": None})
        if path == "/scale_elastic_ep":
            return self._scale_elastic_ep(request)
        if path == "/invocations":
            return await self._invocations(request, reader, writer)
        if path in DOCS_ROUTES:
            return self._docs_page(path)
        body = self._json_body(request)
        if isinstance(body, Response):
            return body
        if path == "/tokenize":
            return self._tokenize(body)
        if path == "/detokenize":
            return self._detokenize(body)
        return self._generative_scoring(request, body)

    async def _invocations(self, request: HttpRequest, reader, writer) -> Response | int:
        """serve/sagemaker/api_router.py as model_hosting_container_standards' bootstrap leaves it: re-mounted
        without the validate_json_request dependency (any content type), behind its session and adapter transforms;
        the first request model the body validates as (chat, then completion) picks the handler."""
        try:
            body = json.loads(request.body)
        except json.JSONDecodeError as error:  # raised by the transforms as an HTTPException
            return error_response(f"JSON decode error: {error}", "Bad Request")
        except UnicodeDecodeError as error:  # a ValueError: the fallback handler's 400
            return error_response(str(error))
        # The session transform tests `"requestType" in body`, then inject_adapter_id(adapter_path="model") sets
        # body["model"] to the X-Amzn-SageMaker-Adapter-Identifier header, None without it: TypeErrors (400) on
        # anything but an object, and the request's own model name is dropped.
        if isinstance(body, list):
            return error_response("list indices must be integers or slices, not str")
        if isinstance(body, str):
            return error_response("'str' object does not support item assignment")
        if not isinstance(body, dict):
            return error_response(f"argument of type '{type(body).__name__}' is not iterable")
        body["model"] = request.headers.get("x-amzn-sagemaker-adapter-identifier")
        if not chat_field_errors(body) and all(isinstance(message, dict) for message in body["messages"]):
            return await self._chat(request, body, reader, writer)
        if (error := completion_prompt_error(body)) is not None:
            return error
        if completion_field_errors(body) or not prompt_shape_valid(body["prompt"]):
            return error_response("Cannot find suitable handler for request. Expected one of: "
                                  "['ChatCompletionRequest', 'CompletionRequest']")
        return await self._completion(request, body, reader, writer)

    def _tokenize(self, body: dict) -> Response:
        """serve/tokenize/serving.py create_tokenize: a prompt, or messages rendered as the chat route does."""
        if body.get("continue_final_message") and body.get("add_generation_prompt"):  # TokenizeChatRequest
            return vllm_validation_error("Cannot set both `continue_final_message` and `add_generation_prompt` "
                                         "to True.")
        chat = not isinstance(body.get("prompt"), str)
        if chat and not isinstance(body.get("messages"), list):
            return validation_error(tokenize_errors(body))
        if (error := self._unknown_model(body)) is not None:
            return error
        deployment = self.deployment
        if chat:
            messages = [m for m in body["messages"] if isinstance(m, dict)]
            tools = body.get("tools") or None
            error, count, _ = self._chat_prompt(body, messages, tools)
            if error is not None:
                return error
            ids = invented_token_ids(json.dumps(messages), count, bos=True)  # the template writes the BOS
        else:
            special = body.get("add_special_tokens", True) is not False
            ids = invented_token_ids(body["prompt"], estimate_tokens(body["prompt"]) + special, bos=special)
        return Response.json(200, {"count": len(ids), "max_model_len": deployment.max_model_len, "tokens": ids,
                                   "token_strs": [token_piece(i) for i in ids] if body.get("return_token_strs")
                                   else None})

    def _detokenize(self, body: dict) -> Response:
        """serve/tokenize/serving.py create_detokenize; ids outside the vocabulary decode to nothing."""
        if errors := detokenize_errors(body):
            return validation_error(errors)
        if (error := self._unknown_model(body)) is not None:
            return error
        text = "".join(token_piece(i) for i in body["tokens"] if i < VOCAB_SIZE).replace("Ġ", " ")
        return Response.json(200, {"prompt": text})

    def _generative_scoring(self, request: HttpRequest, body: dict) -> Response:
        """generate/generative_scoring/serving.py: one forward pass per item for the probability of the first label
        token after query + item. The stand-in invents the log-probabilities (seeded by the texts) and does not
        schedule the passes."""
        if errors := scoring_errors(body):
            return validation_error(errors)
        if (error := self._unknown_model(body)) is not None:
            return error
        labels, items, query = body["label_token_ids"], body["items"], body["query"]
        for token_id in labels:
            if token_id < 0 or token_id >= VOCAB_SIZE:
                return error_response(f"label_token_id {token_id} is out of vocabulary range [0, {VOCAB_SIZE}). "
                                      "Please provide valid token IDs.")
        if not labels:
            return error_response("label_token_ids must contain at least one token ID.")
        if not items:
            return error_response("items must contain at least one item.")
        special = body.get("add_special_tokens", True) is not False
        query_tokens = len(query) if isinstance(query, list) else estimate_tokens(query) + special
        data, prompt_tokens = [], 0
        for index, item in enumerate(items):
            item_tokens = len(item) if isinstance(item, list) else estimate_tokens(item)
            prompt_tokens += min(query_tokens + item_tokens, self.deployment.max_model_len - 1)
            logprobs = {label: -random.Random(f"{query}|{item}|{label}").uniform(0.05, 12.0) for label in labels}
            if body.get("apply_softmax", True) is not False:  # normalised over the label tokens only
                top = max(logprobs.values())
                weights = {label: math.exp(value - top) for label, value in logprobs.items()}
                probabilities = {label: weight / sum(weights.values()) for label, weight in weights.items()}
            else:
                probabilities = {label: math.exp(value) for label, value in logprobs.items()}
            data.append({"index": index, "object": "score", "score": probabilities[labels[0]]})
        rid = request.headers.get("x-request-id") or body.get("request_id") or random_id()
        return Response.json(200, {
            "id": f"generative-scoring-{rid}", "object": "list", "created": int(time.time()),
            "model": self.deployment.served_names[0], "data": data,
            "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens + len(items),
                      "completion_tokens": len(items), "prompt_tokens_details": None,
                      "completion_tokens_details": None}})

    def _scale_elastic_ep(self, request: HttpRequest) -> Response:
        """serve/elastic_ep/api_router.py. The size already running is a no-op; any other fails in the engine client
        (EngineCoreClient.prepare_elastic_ep raises NotImplementedError) and is answered "Scale failed"."""
        if (error := unsupported_media_type(request)) is not None:
            return error
        try:
            body = json.loads(request.body)
        except json.JSONDecodeError:
            return error_response("Invalid JSON format", "Bad Request")
        except UnicodeDecodeError as error:
            return error_response(str(error))
        if not isinstance(body, dict):  # body.get raises AttributeError: the catch-all 500
            return error_response(f"'{type(body).__name__}' object has no attribute 'get'", "InternalServerError", 500)
        size, drain_timeout = body.get("new_data_parallel_size"), body.get("drain_timeout", 120)
        if size is None:
            return error_response("new_data_parallel_size is required", "Bad Request")
        if not isinstance(size, int) or size <= 0:
            return error_response("new_data_parallel_size must be a positive integer", "Bad Request")
        if not isinstance(drain_timeout, int) or drain_timeout <= 0:
            return error_response("drain_timeout must be a positive integer", "Bad Request")
        if size == self.deployment.data_parallel_size:
            return Response.json(200, {"message": f"Scaled to {size} data parallel engines"})
        self.log.error(self.api, SCALE_FAILED_LOG, "Scale failed: ")
        return error_response("Scale failed", "Internal Server Error", 500)

    def _docs_page(self, path: str) -> Response:
        if path == "/openapi.json":  # every route but FastAPI's own pages, as include_in_schema leaves them
            return Response.json(200, {
                "openapi": "3.1.0", "info": {"title": "FastAPI", "version": "0.1.0"},
                "paths": {route: {method.lower(): {"responses": {"200": {"description": "Successful Response"}}}
                                  for method in methods}
                          for route, methods in self.routes.items() if route not in DOCS_ROUTES}})
        title, head, body = DOCS_PAGES[path]
        page = f"<!DOCTYPE html><html><head>{head}<title>{title}</title></head><body>{body}</body></html>"
        if self.deployment.docs == "offline":  # vLLM's own copy of Swagger UI, under /static (not served here)
            page = page.replace(SWAGGER_CDN, "/static")
        return Response(200, page.encode(), "text/html; charset=utf-8")
