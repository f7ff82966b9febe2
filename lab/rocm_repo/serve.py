#!/usr/bin/env python3
"""Serves a repository built by build_repo.py over HTTP, as repo.radeon.com serves AMD's (stdlib only).

    serve.py --dir DIR [--host 127.0.0.1] [--port 0]

Prints `READY http://HOST:PORT` on stdout once it listens (port 0 picks a free port) and runs until SIGTERM or
SIGINT. GET and HEAD of files, with Last-Modified/If-Modified-Since so that apt sees unchanged indices as hits.
Paths with a component starting with '.' (DIR/.build holds the test key's secret half) answer 404, and so do
directories (AMD's server lists them; apt never asks). One access-log line per request on stderr.
"""

import argparse
import functools
import signal
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit


class RepoHandler(SimpleHTTPRequestHandler):
    """Static files only; hidden paths and directory listings are not found."""

    protocol_version = "HTTP/1.1"
    server_version = "rocm-repo-standin/1"
    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, ".deb": "application/vnd.debian.binary-package",
                      ".gpg": "application/pgp-signature", ".key": "application/pgp-keys",
                      ".gz": "application/gzip", "": "text/plain"}

    def send_head(self):
        path = unquote(urlsplit(self.path).path)
        if any(part.startswith(".") for part in path.split("/")) or Path(self.translate_path(self.path)).is_dir():
            self.send_error(404, "Not Found")
            return None
        return super().send_head()

    def log_message(self, format, *args):  # noqa: A002 -- the base class's signature
        sys.stderr.write(f"{self.address_string()} {format % args}\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, required=True, help="the directory build_repo.py wrote (--out)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    if not (args.dir / "standin-repo.json").is_file():
        parser.error(f"{args.dir} holds no repository built by build_repo.py (no standin-repo.json)")
    handler = functools.partial(RepoHandler, directory=str(args.dir.resolve()))
    server = ThreadingHTTPServer((args.host, args.port), handler)
    server.daemon_threads = True
    # shutdown() must come from another thread than serve_forever's.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: threading.Thread(target=server.shutdown).start())
    host, port = server.server_address[:2]
    print(f"READY http://{host}:{port}", flush=True)
    with server:
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
