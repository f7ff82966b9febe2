"""Benchmark: the model_weights downloader against a plain parallel HTTP copy of the same files.

Starts the hub stand-in (lab/hf_hub/server.py) with the given shard size, storage and bandwidth limit, asks
it for the manifest once (which also makes it hash its shards, so neither timed run pays for that), then downloads
every file of the revision twice with the same number of workers:

- with the role's downloader (plugins/module_utils/hf_weights.py: metadata HEAD per file, Range-capable
  transfer, sha256 or git-blob verification, fsync, rename, links), into a fresh HF cache;
- with a plain copy: stdlib urllib threads GET each file's resolve URL (following the redirect to the CDN or the
  Xet bridge) into a file.

It prints both rates and their ratio. This is a benchmark, not a test: numbers depend on the machine, and
without --throttle-bps the stand-in (pure Python) is part of what is measured.

    .venv/bin/python -m benchmarks.download_rate --shard-bytes 4194304 --workers 8 --throttle-bps 200000000

(from the repository root: it imports plugins.module_utils and lab).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import pathlib
import shutil
import tempfile
import threading
import time
import urllib.parse
import urllib.request

from plugins.module_utils import hf_weights
from lab.hf_hub.hub_process import HubProcess

REPO_ID = "deepseek-ai/DeepSeek-V3.2"
COPY_CHUNK = 8 * 1024 * 1024


def run_downloader(url: str, manifest: hf_weights.Manifest, home: pathlib.Path, workers: int) -> float:
    settings = hf_weights.TransferSettings(max_workers=workers)
    hub = hf_weights.Hub(REPO_ID, endpoint=url, token=None, settings=settings)
    started = time.monotonic()
    result = hf_weights.SnapshotSync(str(home), REPO_ID, manifest.revision, source=hub, settings=settings,
                                     hub=hub).run(manifest)
    elapsed = time.monotonic() - started
    assert result["bytes_downloaded"] == manifest.bytes_total, result
    return elapsed


def run_plain_copy(url: str, manifest: hf_weights.Manifest, target: pathlib.Path, workers: int,
                   timeout: float) -> float:
    """GET every file's resolve URL (urllib follows the redirect to the CDN) and write it; nothing else."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    copied = 0
    lock = threading.Lock()

    def copy(item: hf_weights.ManifestFile) -> None:
        nonlocal copied
        source = f"{url}/{REPO_ID}/resolve/{manifest.commit}/{urllib.parse.quote(item.path)}"
        destination = target / item.path
        destination.parent.mkdir(parents=True, exist_ok=True)
        with opener.open(source, timeout=timeout) as response, open(destination, "wb") as handle:
            while chunk := response.read(COPY_CHUNK):
                handle.write(chunk)
        with lock:
            copied += destination.stat().st_size

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        for future in [pool.submit(copy, item) for item in manifest.files]:
            future.result()
    elapsed = time.monotonic() - started
    assert copied == manifest.bytes_total, (copied, manifest.bytes_total)
    return elapsed


def rate(count: int, seconds: float) -> str:
    return f"{count / 1e6:.1f} MB in {seconds:.2f} s = {count / seconds / 1e6:.1f} MB/s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shard-bytes", type=int, default=1024 * 1024,
                        help="approximate size of each of the 163 shards (default 1 MiB)")
    parser.add_argument("--throttle-bps", type=int, default=None,
                        help="bandwidth limit of the stand-in for all connections together, bytes/s (default none)")
    parser.add_argument("--storage", choices=("xet", "lfs"), default="xet",
                        help="how the stand-in stores the shards: xet (the hub's default, bytes from its Xet "
                             "bridge) or lfs (a CDN)")
    parser.add_argument("--workers", type=int, default=8, help="files transferred at once by both (default 8)")
    parser.add_argument("--timeout", type=float, default=120, help="per-request timeout, seconds (default 120)")
    args = parser.parse_args()

    work = pathlib.Path(tempfile.mkdtemp(prefix="download-rate-"))
    options = ["--shard-bytes", str(args.shard_bytes), "--storage", args.storage]
    options += ["--throttle-bps", str(args.throttle_bps)] if args.throttle_bps else []
    hub = HubProcess(options, work / "hub.log")
    url = hub.url
    try:
        settings = hf_weights.TransferSettings(timeout=args.timeout)
        manifest = hf_weights.Hub(REPO_ID, endpoint=url, token=None, settings=settings).manifest(
            "main", threading.Event())
        print(f"stand-in: {len(manifest.files)} files, {manifest.bytes_total / 1e6:.1f} MB "
              f"(shards of about {args.shard_bytes / 2**20:.1f} MiB, {args.storage} storage), throttle "
              f"{args.throttle_bps or 'none'} B/s, {args.workers} workers")
        ours = run_downloader(url, manifest, work / "hf_home", args.workers)
        plain = run_plain_copy(url, manifest, work / "plain", args.workers, args.timeout)
    finally:
        hub.stop()
    shutil.rmtree(work, ignore_errors=True)
    print(f"hf_weights (HEAD, verify, fsync, rename, links): {rate(manifest.bytes_total, ours)}")
    print(f"plain urllib threads (GET and write only):       {rate(manifest.bytes_total, plain)}")
    print(f"ratio hf_weights / plain: {plain / ours:.2f}")


if __name__ == "__main__":
    main()
