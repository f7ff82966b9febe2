"""Hugging Face Hub stand-in serving a deterministic copy of `deepseek-ai/DeepSeek-V3.2`.

The real `huggingface_hub` client (2.4.0) downloads from it when `HF_ENDPOINT` points at it. It answers the
calls the client makes, with the hub's status codes, headers and error codes:

  GET  /api/models/{repo}[/revision/{rev}][?blobs=true]     model info (siblings, sha256 and sizes with blobs)
  GET  /api/models/{repo}/tree/{rev}[/{path}]?recursive=&expand=   paginated with `Link: <...>; rel="next"`
  POST /api/models/{repo}/paths-info/{rev}                  form or JSON body with `paths`
  GET  /api/models/{repo}/refs                              branches
  GET  /api/models/{repo}/xet-read-token/{rev}              Xet access token (X-Xet-* headers and JSON)
  HEAD|GET /{repo}/resolve/{rev}/{path}                     git files: 200 from the hub (ETag = git oid);
                                                            LFS files: 302 to a CDN listener on a second port,
                                                            with X-Linked-Etag (sha256) and X-Linked-Size;
                                                            with --storage xet, 302 to the Xet bridge listener
                                                            instead, plus X-Xet-Hash and Link rel="xet-auth"
  HEAD|GET {cdn}/repos/../{sha256}?Expires=&Signature=      LFS bytes, Range -> 206, signed URLs like the CDN
  HEAD|GET {bridge}/xet-bridge-us/{repo}/{xet hash}?X-Amz-*  Xet-backed bytes over plain HTTP, Range -> 206
  GET  {bridge}/v1/reconstructions/{xet hash}               Xet CAS: answers 501 (the protocol is not reproduced)

The CDN and the bridge run on their own ports so that, like with the real hub, the client stops at the 302,
takes the file's metadata from it and drops the Authorization header when fetching the bytes. With the default
`--storage lfs` no Xet header or field is sent and the client uses plain HTTP; with `--storage xet` every shard
is Xet-backed as on today's hub, and the client takes the Xet path unless HF_HUB_DISABLE_XET=1 (its HTTP
fallback, which follows the redirect to the bridge).

Content is generated from a seed at start-up: 163 safetensors shards (Git LFS; bytes computed on demand by
offset, sha256 on first use), their index, config, tokenizer, code, card and licence (git files). With
`--size-profile real` the metadata carries the real sizes (~689 GB) and shard downloads answer 501.

The hub's rate limits (429 with Retry-After and the RateLimit headers) apply per bucket (api, resolvers) once
set with --rate-limit or through /_sim/faults.

Test control (not on the real hub), on the hub port: GET /_sim/info, GET|POST|DELETE /_sim/faults (status,
hang, stall, drop, corrupt faults, a global throttle and rate limits), GET|DELETE /_sim/stats, POST /_sim/refs.

Run: `python3 server.py --port 0 ...` prints `READY http://HOST:PORT` once listening. See README.md.
Only the Python standard library is used: the stand-in runs in minimal containers.

The code is the hub/ package beside this file, one module per concern (README.md lists them). This file is the
command: run as a script (as the lab's containers run it, from a read-only mount, nothing installed), its folder
is the first entry of sys.path, so `hub` imports as a package. `from server import build_repo, HubServer` gives
the same server in-process.
"""

import sys

from hub.cli import main
from hub.listeners import HubServer
from hub.repo import build_repo

__all__ = ["HubServer", "build_repo", "main"]

if __name__ == "__main__":
    sys.exit(main())
