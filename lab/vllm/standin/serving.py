"""Serving, and shutdown on SIGTERM (entrypoints/launchers/launcher.py serve_http, v1/engine/core.py)."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import time

from .app import App
from .container import cache_key, env_float
from .engine import Engine
from .log import CLI_FRAMES, Proc, StartupFailure, VllmLog, print_traceback, uvicorn_log
from .metrics import Metrics
from .releases import Release
from .routes import ROUTE_LIST, Deployment
from .server import HttpServer
from .startup import Startup

INTERRUPTED = -2  # start-up interrupted by SIGTERM: exit as Python does on an uncaught KeyboardInterrupt


def fingerprint(args: argparse.Namespace, release: Release, config: dict) -> str | None:
    """entrypoints/serve/utils/fingerprint.py: vllm-<version>[-tpN][-ppN]-<hash8>."""
    mode = args.fingerprint_mode or "full"
    if mode == "none":
        return None
    if mode == "custom":
        return args.fingerprint_value
    digest = cache_key(args.model, args.revision, config["quantization"], config["kv_dtype"])[:8]
    parts = [f"vllm-{release.version}"]
    if mode == "full":
        parts += [f"{name}{size}" for name, size in (("tp", args.tensor_parallel_size or 1),
                                                      ("pp", args.pipeline_parallel_size or 1)) if size > 1]
    return "-".join(parts + [digest])


async def log_stats(log: VllmLog, api: Proc, engine: Engine, metrics: Metrics, interval: float) -> None:
    """v1/metrics/loggers.py LoggingStatLogger: one line per interval while the engine is busy."""
    last = (time.monotonic(), metrics.prompt_tokens, metrics.generation_tokens)
    while True:
        await asyncio.sleep(interval)
        now = time.monotonic()
        prompt_rate = (metrics.prompt_tokens - last[1]) / (now - last[0])
        generation_rate = (metrics.generation_tokens - last[2]) / (now - last[0])
        last = (now, metrics.prompt_tokens, metrics.generation_tokens)
        if engine.unfinished or prompt_rate or generation_rate:
            log.info(api, "loggers.py:335",
                     f"Engine 000: Avg prompt throughput: {prompt_rate:.1f} tokens/s, Avg generation throughput: "
                     f"{generation_rate:.1f} tokens/s, Running: {engine.running} reqs, Waiting: "
                     f"{len(engine.waiting)} reqs, GPU KV cache usage: {engine.kv_usage() * 100:.1f}%, Prefix cache "
                     f"hit rate: 0.0%")


async def serve(args: argparse.Namespace, release: Release, log: VllmLog) -> int:
    startup = Startup(args, release, log)
    api, core = startup.api, startup.core
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()
    stop = asyncio.Event()
    phase = {"ready": False, "signal": "SIGTERM"}

    def on_signal(name: str) -> None:
        if phase["ready"]:
            phase["signal"] = name
            stop.set()
        else:
            main_task.cancel()  # entry.py run_server: `_interrupt_init` raises KeyboardInterrupt("terminated")

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signal.Signals(signum).name)
    try:
        sock = startup.setup_server()
        config = startup.engine_config()
        engine_info = await startup.start_engine(config)
    except StartupFailure as failure:
        return failure.exit_code
    except asyncio.CancelledError:
        print_traceback(CLI_FRAMES + [("entrypoints/launchers/api_server/entry.py", 170, "_interrupt_init",
                                       'raise KeyboardInterrupt("terminated")')], "KeyboardInterrupt: terminated")
        return INTERRUPTED

    served = args.served_model_name or [args.model]
    max_model_len = config["max_model_len"]
    deployment = Deployment(
        model=args.model, served_names=served, max_model_len=max_model_len,
        has_chat_template=config["tokenizer_mode"] == "deepseek_v32" or args.chat_template is not None,
        auto_tools=bool(args.enable_auto_tool_choice and args.tool_call_parser),
        reasoning_parser=startup.reasoning_parser,
        default_chat_template_kwargs=args.default_chat_template_kwargs or {},
        api_keys=[key for key in (args.api_key or [os.environ.get("VLLM_API_KEY")]) if key],
        fingerprint=fingerprint(args, release, config), garbled=engine_info["garbled"],
        log_requests=bool(args.enable_log_requests), release=release,
        trust_request_chat_template=bool(args.trust_request_chat_template), tokenizer_mode=config["tokenizer_mode"],
        server_load_tracking=bool(args.enable_server_load_tracking),
        docs="none" if args.disable_fastapi_docs else "offline" if args.enable_offline_docs else "online",
        data_parallel_size=args.data_parallel_size or 1)
    metrics = Metrics(served[0], max_model_len)
    engine = Engine(stream_rate=env_float("SIM_TOKENS_PER_SECOND_PER_STREAM", 100.0),
                    capacity=env_float("SIM_MAX_TOKENS_PER_SECOND", 5700.0),
                    ttft=env_float("SIM_TTFT_SECONDS", 0.2), prefill_rate=env_float("SIM_PREFILL_TOKENS_PER_SECOND", 0),
                    max_num_seqs=args.max_num_seqs or 1024, kv_tokens=engine_info["kv_tokens"], metrics=metrics,
                    tick=env_float("SIM_ENGINE_TICK_SECONDS", 0.002))
    app = App(deployment, engine, metrics, log, api)
    log.info(api, "entry.py:135", "Supported tasks: ('generate',)")
    if deployment.auto_tools:
        log.info(api, "parser_manager.py:36", '"auto" tool choice has been enabled.')
    log.info(api, "entry.py:139", release.server_start_message % startup.listen_address())
    log.info(api, "launcher.py:188", "Available routes are:")
    for path, method in ROUTE_LIST:
        if path in app.routes:
            log.info(api, "launcher.py:197", f"Route: {path}, Methods: {method}")
    quiet = {path.strip() for path in (args.disable_access_log_for_endpoints or "").split(",") if path.strip()}
    http = HttpServer(app, sock, access_log=not args.disable_uvicorn_access_log, quiet_paths=quiet,
                      keep_alive=env_float("VLLM_HTTP_TIMEOUT_KEEP_ALIVE", 5))
    uvicorn_log(f"Started server process [{os.getpid()}]")
    uvicorn_log("Waiting for application startup.")
    uvicorn_log("Application startup complete.")
    await http.start()
    phase["ready"] = True
    stats = None
    if not args.disable_log_stats:
        stats = asyncio.ensure_future(log_stats(log, api, engine, metrics,
                                                env_float("VLLM_LOG_STATS_INTERVAL", 10.0)))
    await stop.wait()

    timeout = (args.shutdown_timeout or 0) if release.has_shutdown_timeout else 0
    mode = "abort" if timeout == 0 else "drain"
    log.info(api, "launcher.py:256", "[shutdown] API server: shutdown triggered")
    log.info(api, "launcher.py:273", f"[shutdown] API server: stopping engine client mode={mode} timeout={timeout}s")
    log.info(api, "core_client.py:792", f"[shutdown] MPClient: start timeout={timeout}s")
    log.info(api, "core_client.py:794", "[shutdown] MPClient: stopping engine manager")
    log.info(core, "core.py:1526", f"[shutdown] EngineCore: trigger received signal={phase['signal']}")
    log.info(core, "core.py:1713", f"[shutdown] EngineCore: start mode={mode} timeout={timeout}s")
    engine.accepting = False
    in_flight = engine.unfinished
    if mode == "abort":
        if in_flight:
            log.info(core, "core.py:1722", f"[shutdown] EngineCore: aborting in-flight requests count={in_flight}")
        engine.abort_all()
    else:
        if in_flight:
            log.info(core, "core.py:1733", f"[shutdown] EngineCore: draining in-flight requests count={in_flight} "
                                           f"timeout={timeout}s")
        try:
            await asyncio.wait_for(engine.idle.wait(), timeout)
        except TimeoutError:
            engine.abort_all()  # the engine process is stopped after the timeout
    log.info(core, "core.py:1743", "[shutdown] EngineCore: request processing complete; starting resource teardown")
    log.info(core, "core.py:1573", "[shutdown] EngineCore: exiting busy loop")
    for message in ("engine manager stopped", "cleaning up background resources", "complete"):
        log.info(api, "core_client.py:796", f"[shutdown] MPClient: {message}")
    log.info(api, "launcher.py:281", "[shutdown] API server: engine client stopped")
    log.info(api, "launcher.py:284", "[shutdown] API server: signalling HTTP server shutdown")
    log.info(api, "launcher.py:306", "[shutdown] API server: shutting down FastAPI HTTP server")
    if stats is not None:
        stats.cancel()
    uvicorn_log("Shutting down")
    await http.close(grace=5.0)
    uvicorn_log("Waiting for application shutdown.")
    uvicorn_log("Application shutdown complete.")
    uvicorn_log(f"Finished server process [{os.getpid()}]")
    return 0
