"""The command line (utils/argparse_utils.py FlexibleArgumentParser, entrypoints/cli/main.py), and main(): parse,
validate, serve."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import sys

from .log import CLI_FRAMES, Proc, VllmLog, print_traceback
from .options import (HUMAN_READABLE_INT_OPTIONS, JSON_CONFIG_OPTIONS, SERVE_CHOICES, SERVE_DESCRIPTION, SERVE_OPTIONS,
                      SUBCOMMANDS)
from .releases import DEFAULT_VERSION, Release
from .serving import INTERRUPTED, serve

DEFAULT_MODEL = "Qwen/Qwen3-0.6B"  # `vllm serve` without a model (entrypoints/cli/serve.py)


def human_readable_int(value: str) -> int:
    """'1k' -> 1000, '1K' -> 1024, '25.6k' -> 25600 (utils/argparse_utils.py)."""
    value = value.strip()
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([kKmMgGtT])", value)
    if match:
        number, suffix = match.groups()
        if suffix in "kmgt":
            return int(float(number) * 10 ** (3 * ("kmgt".index(suffix) + 1)))
        if "." in number:
            raise argparse.ArgumentTypeError(
                f"Decimals are not allowed with binary suffixes like {suffix}. "
                f"Did you mean to use {number}{suffix.lower()} instead?")
        return int(number) * 2 ** (10 * ("KMGT".index(suffix) + 1))
    return int(value)


def human_readable_int_or_auto(value: str) -> int:
    value = value.strip()
    if value == "-1" or value.lower() == "auto":
        return -1
    return human_readable_int(value)


def dataclass_parser(config_name: str):
    """JSON config options are pydantic dataclasses parsed from JSON; argparse shows pydantic's error."""
    def parse_dataclass(value: str):
        try:
            return json.loads(value)
        except json.JSONDecodeError as error:
            raise argparse.ArgumentTypeError(
                f"1 validation error for {config_name}\n"
                f"  Invalid JSON: {error.msg.lower()} at line {error.lineno} column {error.colno} "
                f"[type=json_invalid, input_value={value!r}, input_type=str]") from None
    return parse_dataclass


class EnableDisableAction(argparse.Action):
    """argparse.BooleanOptionalAction as vLLM registers it: `--x`/`--no-x`, and `--enable-x` paired with
    `--disable-x` (utils/argparse_utils.py EnableDisableAction)."""

    def __init__(self, option_strings, dest, default=None, **kwargs):
        negative = {"--no-" + opt[2:] for opt in option_strings if opt.startswith("--")}
        for opt in option_strings:
            for prefix, inverse in (("--enable-", "--disable-"), ("--disable-", "--enable-")):
                if opt.startswith(prefix):
                    negative.add(inverse + opt[len(prefix):])
        self.negative_option_strings = negative
        super().__init__([*option_strings, *sorted(negative)], dest, nargs=0, default=default, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, option_string not in self.negative_option_strings)


def _serve_parser(subparsers) -> argparse.ArgumentParser:
    serve = subparsers.add_parser(
        "serve", help="Launch a local OpenAI-compatible API server to serve LLM completions via HTTP.",
        description=SERVE_DESCRIPTION, usage="vllm serve [model_tag] [options]",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    serve.add_argument("model_tag", type=str, nargs="?",
                       help="The model tag to serve (optional if specified in config)")
    choices = {name: text.split() for name, text in SERVE_CHOICES.items()}
    for kind, text in SERVE_OPTIONS.items():
        for group in text.split():
            names = group.split("|")
            dest = names[0].lstrip("-").replace("-", "_")
            kwargs: dict = {"dest": dest, "default": None}
            if kind == "flag":
                kwargs.update(action="store_true", default=False)
            elif kind == "bool":
                kwargs["action"] = EnableDisableAction
            elif kind == "list":
                kwargs["nargs"] = "+"
            elif kind == "optional":
                kwargs.update(nargs="?", const=True)
            elif names[0] == "--max-model-len":
                kwargs["type"] = human_readable_int_or_auto
            elif names[0] in HUMAN_READABLE_INT_OPTIONS:
                kwargs["type"] = human_readable_int
            elif kind in ("int", "float"):
                kwargs["type"] = int if kind == "int" else float
            elif names[0] in JSON_CONFIG_OPTIONS:
                kwargs["type"] = dataclass_parser(JSON_CONFIG_OPTIONS[names[0]])
            elif names[0] in ("--default-chat-template-kwargs", "--reasoning-effort-map"):
                kwargs["type"] = json.loads  # cli_args.py BaseFrontendArgs._customize_cli_kwargs
            if names[0] in choices:
                kwargs["choices"] = choices[names[0]]
            serve.add_argument(*names, **kwargs)
    return serve


class CliParser(argparse.ArgumentParser):
    """The top-level `vllm` parser; it reports arguments the subcommand did not recognise."""

    def error(self, message: str):
        if message.startswith("unrecognized arguments:") and re.search(r"(^|\s)--task(=|\s|$)", message):
            message += ("\n\nHint: --task is not a vllm serve option. For embedding, reranking, or reward models, "
                        "use --runner pooling. To adapt a generative model for pooling, also use --convert embed, "
                        "--convert classify, or --convert reward.")
        super().error(message)


def build_cli_parser() -> argparse.ArgumentParser:
    parser = CliParser(prog="vllm", description="vLLM CLI")
    parser.add_argument("-v", "--version", action="version",
                        version=os.environ.get("VLLM_STANDIN_VERSION", DEFAULT_VERSION))
    subparsers = parser.add_subparsers(required=False, dest="subparser")
    for name in SUBCOMMANDS:
        if name == "serve":
            _serve_parser(subparsers)
        else:
            subparsers.add_parser(name)
    return parser


def flexible_argv(argv: list[str], log: VllmLog) -> list[str]:
    """FlexibleArgumentParser.parse_args before argparse: `--model X` becomes the positional model, `_` in option
    names becomes `-`, `-O3` becomes `--optimization-level 3`, and `--a.b v` becomes `--a '{"b": v}'`."""
    main = Proc("MainProcess", os.getpid())
    if argv[:1] == ["serve"]:
        index = next((i for i, arg in enumerate(argv) if re.match(r"^--model(=.+|$)", arg)), None)
        if index is not None:
            log.warning(main, "argparse_utils.py:330",
                        "With `vllm serve`, you should provide the model as a positional argument or in a config "
                        "file instead of via the `--model` option. The `--model` option will be removed in a "
                        "future version.")
            if argv[index] == "--model":
                tag, rest = (argv[index + 1] if index + 1 < len(argv) else ""), index + 2
            else:
                tag, rest = argv[index].removeprefix("--model="), index + 1
            argv = ["serve", tag, *argv[1:index], *argv[rest:]]
        if (len(argv) > 1 and argv[1].startswith("-")
                and not any(re.match(r"^--config(=.+|$)", arg) for arg in argv)
                and any(re.match(r"^--served[-_]model[-_]name(=.+|$)", arg) for arg in argv)):
            raise ValueError("`model` should be provided as the first positional argument when using "
                             "`vllm serve`. i.e. `vllm serve <model> --<arg> <value>`.")
    processed: list[str] = []
    for i, arg in enumerate(argv):
        if arg.startswith("--") and not arg.startswith("--help="):
            key, sep, value = arg.partition("=")
            head, dot, tail = key.partition(".")
            processed.append(head.replace("_", "-") + dot + tail + sep + value)
        elif arg.startswith("-O") and arg != "-O":
            processed += ["--optimization-level", arg[3:] if arg[2:3] == "=" else arg[2:]]
        elif arg == "-O" and i + 1 < len(argv) and argv[i + 1] in {"0", "1", "2", "3"}:
            processed.append("--optimization-level")
        else:
            processed.append(arg)
    merged: dict[str, dict] = {}
    result: list[str] = []
    skip = False
    for i, arg in enumerate(processed):
        if skip:
            skip = False
            continue
        if arg.startswith("-") and "." in arg.split("=", 1)[0]:
            name, sep, value = arg.partition("=")
            if not sep:
                value, skip = (processed[i + 1] if i + 1 < len(processed) else ""), True
            key, *keys = name.rstrip("+").split(".")
            try:
                parsed = json.loads(value)
            except json.JSONDecodeError:
                parsed = value
            if name.endswith("+"):
                parsed = value.split(",")
            node = merged.setdefault(key, {})
            for part in keys[:-1]:
                node = node.setdefault(part, {})
            node[keys[-1]] = parsed
            continue
        result.append(arg)
    for key, value in merged.items():
        result += [key, json.dumps(value)]
    return result


def parse_serve_command(argv: list[str], log: VllmLog) -> argparse.Namespace:
    """Parse like `vllm <argv>`; argparse prints usage and exits 2 on bad input, as vLLM does."""
    parser = build_cli_parser()
    if "--config" in argv:
        # vLLM reads a YAML file here; the stand-in has no YAML parser.
        parser.error("--config: configuration files are not simulated by the vLLM stand-in")
    args = parser.parse_args(flexible_argv(argv, log))
    if args.subparser != "serve":
        if args.subparser is None:
            parser.print_help()
            raise SystemExit(0)
        sys.stderr.write(f"vllm {args.subparser}: not simulated by the vLLM stand-in (only `vllm serve` is)\n")
        raise SystemExit(2)
    defaults = vars(parser.parse_args(["serve"]))
    args.non_default = {key: value for key, value in vars(args).items() if defaults.get(key) != value}
    args.model = args.model_tag or args.model or DEFAULT_MODEL
    return args


def main(argv: list[str]) -> int:
    log = VllmLog()
    release = Release(os.environ.get("VLLM_STANDIN_VERSION", DEFAULT_VERSION))
    try:
        args = parse_serve_command(argv, log)
    except ValueError as error:  # FlexibleArgumentParser.parse_args raises before argparse runs
        print_traceback(CLI_FRAMES[:2] + [("utils/argparse_utils.py", 356, "parse_args", "raise ValueError(")],
                        f"ValueError: {error}")
        return 1
    validate_frames = [CLI_FRAMES[0], ("entrypoints/cli/main.py", 100, "main", "cmd.validate(args)"),
                       ("entrypoints/cli/serve.py", 159, "validate", "validate_parsed_serve_args(args)")]
    if args.enable_auto_tool_choice and not args.tool_call_parser:  # cli_args.py validate_parsed_serve_args
        print_traceback(validate_frames, "TypeError: Error: --enable-auto-tool-choice requires --tool-call-parser")
        return 1
    if args.enable_log_outputs and not args.enable_log_requests:
        print_traceback(validate_frames, "TypeError: Error: --enable-log-outputs requires --enable-log-requests")
        return 1
    code = asyncio.run(serve(args, release, log))
    if code == INTERRUPTED:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    return code
