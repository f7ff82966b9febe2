"""The command line: `main()` parses the options, builds the repository, starts the listeners and waits for
SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from .listeners import HubServer
from .ratelimits import DEFAULT_RATE_LIMIT_WINDOW, RATE_LIMIT_BUCKETS
from .repo import DEFAULT_SEED, STORAGES, build_repo
from .shards import DEFAULT_SHARD_BYTES


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Hugging Face Hub stand-in serving deepseek-ai/DeepSeek-V3.2.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--cdn-port", type=int, default=0, help="port of the CDN listener (0 picks a free port)")
    parser.add_argument("--bridge-port", type=int, default=0,
                        help="port of the Xet bridge listener (0 picks a free port)")
    parser.add_argument("--seed", default=DEFAULT_SEED)
    parser.add_argument("--shard-bytes", type=int, default=DEFAULT_SHARD_BYTES,
                        help="approximate size of each shard (varies by up to 10%% per shard)")
    parser.add_argument("--size-profile", choices=("small", "real"), default="small",
                        help="real: report the real shard sizes (~689 GB in all) and serve no shard content")
    parser.add_argument("--storage", choices=STORAGES, default="lfs",
                        help="xet: every shard is Xet-backed, its bytes served by the bridge (as on today's hub)")
    parser.add_argument("--revision-branch", action="append", default=[], metavar="NAME",
                        help="extra branch name pointing at the pinned commit (main always exists)")
    parser.add_argument("--extra-commit", action="store_true",
                        help="add a later commit (README.md edited) and point main at it")
    parser.add_argument("--token", action="append", default=[], help="a valid token with access (repeatable)")
    parser.add_argument("--token-without-access", action="append", default=[],
                        help="a valid token not granted access to the gated repo (repeatable)")
    parser.add_argument("--gated", action="store_true", help="gate the repo: file downloads need a granted token")
    parser.add_argument("--tree-page-size", type=int, default=1000, help="entries per tree page (hub: 1000)")
    parser.add_argument("--fault", action="append", default=[], metavar="JSON",
                        help='a fault, e.g. \'{"kind": "drop", "file": "model-00002-*", "after_bytes": 1000}\'')
    parser.add_argument("--throttle-bps", type=int, default=None, help="global bandwidth limit in bytes/s")
    parser.add_argument("--rate-limit", action="append", default=[], metavar="BUCKET=N",
                        help=f"requests per window in a bucket ({', '.join(RATE_LIMIT_BUCKETS)}); repeatable")
    parser.add_argument("--rate-limit-window", type=float, default=DEFAULT_RATE_LIMIT_WINDOW,
                        help="seconds of a rate-limit window (hub: 300)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        faults = tuple(json.loads(spec) for spec in args.fault)
        rate_limits = {bucket: int(count) for bucket, _, count in (spec.partition("=") for spec in args.rate_limit)}
        repo = build_repo(seed=args.seed, shard_bytes=args.shard_bytes, size_profile=args.size_profile,
                          storage=args.storage, extra_commit=args.extra_commit, branches=tuple(args.revision_branch))
        server = HubServer(repo, host=args.host, port=args.port, cdn_port=args.cdn_port, bridge_port=args.bridge_port,
                           tokens=tuple(args.token), tokens_without_access=tuple(args.token_without_access),
                           gated=args.gated, tree_page_size=args.tree_page_size, faults=faults,
                           throttle_bps=args.throttle_bps, rate_limits=rate_limits,
                           rate_limit_window=args.rate_limit_window)
    except (ValueError, OSError) as error:
        print(f"hf_hub stand-in: {error}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    with server:
        print(f"hf_hub stand-in: {repo.storage} storage, CDN at {server.cdn_url}, Xet bridge at "
              f"{server.bridge_url}, main -> {repo.branches['main']}", file=sys.stderr, flush=True)
        print(f"READY {server.url}", flush=True)
        stop.wait()
    return 0
