"""Logging in vLLM's format (logger.py): "(APIServer pid=1) INFO 11-29 01:02:03 [entry.py:139] message", to
stdout; continuation lines repeat the prefix after "\r\n" (logging_utils/formatter.py NewLineFormatter). uvicorn's
lines, and Python tracebacks as an uncaught exception prints them."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass

PKG = "/usr/local/lib/python3.12/dist-packages/vllm"  # where the ROCm image installs vLLM

LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}


@dataclass(frozen=True)
class Proc:
    name: str
    pid: int


class VllmLog:
    def __init__(self) -> None:
        self.prefix = os.environ.get("VLLM_LOGGING_PREFIX", "")
        self.threshold = LEVELS.get(os.environ.get("VLLM_LOGGING_LEVEL", "INFO").upper(), 20)
        stream_name = os.environ.get("VLLM_LOGGING_STREAM", "ext://sys.stdout")
        self.stream = sys.stderr if stream_name.endswith("stderr") else sys.stdout
        self.seen_once: set[str] = set()

    def log(self, proc: Proc, level: str, where: str, message: str, *, once: bool = False) -> None:
        if LEVELS[level] < self.threshold:
            return
        if once:
            if message in self.seen_once:
                return
            self.seen_once.add(message)
        stamp = time.strftime("%m-%d %H:%M:%S")
        head = f"{self.prefix}({proc.name} pid={proc.pid}) {level} {stamp} [{where}] "
        self.stream.write(head + message.replace("\n", "\r\n" + head) + "\n")
        self.stream.flush()

    def info(self, proc: Proc, where: str, message: str, **kwargs) -> None:
        self.log(proc, "INFO", where, message, **kwargs)

    def warning(self, proc: Proc, where: str, message: str) -> None:
        self.log(proc, "WARNING", where, message)

    def error(self, proc: Proc, where: str, message: str) -> None:
        self.log(proc, "ERROR", where, message)


def uvicorn_log(message: str, stream=None) -> None:
    """uvicorn's default handler: "INFO:     message" (logging config of uvicorn, stderr for the server)."""
    stream = stream or sys.stderr
    stream.write(f"INFO:     {message}\n")
    stream.flush()


# A Python traceback as an uncaught exception prints it. Frames are (path relative to the vLLM package, line,
# function, source line); the exception line is what tests and operators match on.
Frame = tuple[str, int, str, str]

CLI_FRAMES: list[Frame] = [
    ("!/usr/local/bin/vllm", 10, "<module>", "sys.exit(main())"),
    ("entrypoints/cli/main.py", 104, "main", "args.dispatch_function(args)"),
    ("entrypoints/cli/serve.py", 156, "cmd", "uvloop.run(run_server(args))"),
    ("entrypoints/launchers/api_server/entry.py", 178, "run_server",
     "await run_server_worker(listen_address, sock, args, **uvicorn_kwargs)"),
]
ENGINE_ARGS_FRAMES: list[Frame] = CLI_FRAMES + [
    ("entrypoints/launchers/api_server/entry.py", 193, "run_server_worker",
     "async with build_async_engine_client("),
    ("entrypoints/launchers/api_server/entry.py", 60, "build_async_engine_client",
     "async with build_async_engine_client_from_engine_args("),
    ("entrypoints/launchers/api_server/entry.py", 77, "build_async_engine_client_from_engine_args",
     "vllm_config = engine_args.create_engine_config(usage_context=usage_context)"),
]


def format_traceback(frames: list[Frame], exception_line: str) -> list[str]:
    lines = ["Traceback (most recent call last):"]
    for path, line, function, source in frames:
        location = path[1:] if path.startswith("!") else f"{PKG}/{path}"
        lines.append(f'  File "{location}", line {line}, in {function}')
        lines.append(f"    {source}")
    lines.extend(exception_line.split("\n"))
    return lines


def print_traceback(frames: list[Frame], exception_line: str) -> None:
    sys.stderr.write("\n".join(format_traceback(frames, exception_line)) + "\n")
    sys.stderr.flush()


class StartupFailure(Exception):
    """vLLM stopped during start-up; `exit_code` is what the container's main process returns."""

    def __init__(self, exit_code: int = 1) -> None:
        super().__init__(exit_code)
        self.exit_code = exit_code
