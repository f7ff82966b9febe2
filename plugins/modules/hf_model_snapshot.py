#!/usr/bin/python
"""Ansible module hf_model_snapshot: a complete, verified snapshot of a Hugging Face model in an HF cache.

The work is done by module_utils/hf_weights.py; this file parses options, maps them onto it and reports.
"""

from __future__ import annotations

DOCUMENTATION = r"""
module: hf_model_snapshot
short_description: Download a Hugging Face model revision into an HF cache, resumable and verified
description:
  - Puts every file of one revision of a model repository into the Hugging Face cache under O(hf_home)
    (C(<hf_home>/hub/models--org--name/{blobs,snapshots,refs})), the layout C(huggingface_hub) and vLLM read
    with C(HF_HUB_OFFLINE=1).
  - Resolves O(revision) (a branch, a tag or a commit hash) to its commit and lists every file with its size and
    hash in one model-info call of the pinned C(huggingface_hub) client. The result's RV(manifest) can be given to
    other hosts, which then need no hub access.
  - Every hub request goes through the public API of the client (model info, file URLs, the metadata C(HEAD)
    that stops at the hub's redirect, the token and user agent, its exceptions). The transfer is the module's own
    (O(downloader=resumable)), because C(huggingface_hub) 2.4.0 cannot resume across runs and verifies nothing
    while it downloads. It reads the location the client resolved with Python's C(http.client), which needs a
    fraction of the CPU of the client's HTTP stack per byte; the token is only sent to the hub's own origin, never
    to the CDN or the Xet bridge. Proxy settings of the environment (C(HTTPS_PROXY), C(NO_PROXY)) apply, and TLS
    uses the system's CA certificates (or C(SSL_CERT_FILE)).
  - Xet-backed files (the hub's answer names them with C(X-Xet-Hash); the hub's default storage for new uploads)
    are fetched over HTTP from the location the hub redirects to, the Xet bridge, with Range requests - the path
    C(huggingface_hub) itself takes without C(hf_xet) or with C(HF_HUB_DISABLE_XET=1). C(hf_xet) is not used, because
    it rebuilds a file from content-addressed chunks into a temp file that a failed run loses, and checks no
    sha256.
  - A partial file keeps a stable name (C(blobs/<hash>.incomplete)) and is continued with an HTTP Range request;
    files finished earlier are not fetched again. Files are fetched in parallel (O(max_workers)).
  - Transient failures (HTTP 5xx and 429, timeouts, connection resets, truncated bodies) are retried with
    exponential backoff and jitter, bounded by O(retries) and O(retry_max_time) without progress; then the task
    fails with the file and the last error.
  - Every file is verified against the manifest (sha256 for LFS files, the git blob id for others) before it is
    renamed into C(blobs/). Verified blobs are stamped (size, mtime, inode) so that re-runs with O(verify=stamp)
    re-hash only what changed. A file that fails verification is fetched again, and only that file.
  - Temp files that a killed C(huggingface_hub) left behind (C(blobs/<hash>.<8 hex>.incomplete), older than five
    minutes) are removed.
  - With O(source=http) or O(source=path) the bytes come from a peer's snapshot directory served over HTTP (for
    example C(python3 -m http.server) on a seed node) or from a snapshot directory on a path (for example NFS),
    verified against the same manifest.
  - With O(source=fanout) every node of a fleet runs the module at once with the same O(manifest) and O(peers):
    each node fetches its share of the files from the hub (its owner's share, O(owners)) and copies every other
    file from any node that already verified it, as soon as one has, resuming a broken copy from another node;
    a file whose owner is silent for O(peer_wait) seconds is fetched from the hub by the next node of its chain.
    Each node must serve its C(blobs/) directory and its O(progress_file) over HTTP while it runs (the
    model_weights role's nginx peer server; module_utils/hf_fanout.py says what is asked).
  - The snapshot's links are written once every file is verified, and C(refs/<branch>) last, so a reader never
    sees a new commit that is incomplete. The client's own tree listing (C(trees/<commit>.json), a cache private
    to it) is not written.
  - When the disk fills up (C(ENOSPC)) the task stops with the cache directory, the bytes still needed and the
    bytes free; partial files stay for the next run. The same check runs before the download starts.
  - With O(progress_file), a JSON document with the phase, bytes done and total, rate, ETA and current files is
    rewritten atomically every O(progress_interval) seconds (see the C(wait_for_job) action).
  - One download per cache at a time - a second run waits for the first (up to O(lock_timeout)), on the client's
    own file lock (C(<hf_home>/hub/.locks/models--org--name/hf_weights.lock)).
  - With O(downloader=huggingface_hub) the client downloads itself (C(snapshot_download), through C(hf_xet) for
    Xet-backed files unless C(HF_HUB_DISABLE_XET=1) is in the environment), then checks every file with its own
    C(HfApi.verify_repo_checksums); files that fail are removed and the task fails, to be retried by Ansible
    (C(retries)/C(until)). Nothing is resumed - a killed or failed attempt loses the files in flight.
author: DeepSeek V3.2 on AMD Instinct project
requirements:
  - huggingface_hub (tested with 2.4.0) on the host that runs the module
options:
  repo_id:
    description: Model repository, C(org/name).
    type: str
    required: true
  revision:
    description: Branch, tag or 40-character commit hash. A branch or tag is resolved to its commit, which is
      returned, and recorded in C(refs/<revision>).
    type: str
    default: main
  hf_home:
    description: Hugging Face home (C(HF_HOME)); the cache is its C(hub) folder.
    type: path
    required: true
  endpoint:
    description: Hub URL or mirror (C(HF_ENDPOINT)). Default is the client's (C(https://huggingface.co) unless
      C(HF_ENDPOINT) is set in the module's environment).
    type: str
  token:
    description: Hugging Face token, for gated or private repositories. Never sent to the CDN.
    type: str
  downloader:
    description:
      - V(resumable) - the module's own transfer (resume across runs, hashing while streaming, stamps, progress).
      - V(huggingface_hub) - the client's C(snapshot_download) then C(verify_repo_checksums); O(source=hub) only.
        O(progress_file) then shows the phase, not bytes; O(verify) does not apply (every file is checked).
    type: str
    choices: [resumable, huggingface_hub]
    default: resumable
  source:
    description:
      - Where the bytes come from. V(hub) - the hub (or O(endpoint)). V(http) - a peer serving a snapshot
        directory under O(source_url). V(path) - a snapshot directory at O(source_path). V(fanout) - this node's
        share from the hub, the rest from the other nodes of O(peers) (needs O(manifest) or O(manifest_file),
        O(peers), O(peer_index) and O(progress_file)).
      - Whatever the source, files are verified against the hub's manifest (O(manifest), or asked for).
    type: str
    choices: [hub, http, path, fanout]
    default: hub
  source_url:
    description: Base URL under which the peer serves the snapshot's files (C(<source_url>/<path in repo>)).
      Proxy settings of the environment are not used for it. Required with O(source=http).
    type: str
  source_path:
    description: Snapshot directory to copy from (C(<source_path>/<path in repo>)). Required with O(source=path).
    type: path
  peers:
    description: With O(source=fanout), the peer server of every node of the fleet (C(http://address:port/)), this
      node's included, in the same order on every node.
    type: list
    elements: str
  peer_index:
    description: With O(source=fanout), this node's position in O(peers) (from 0).
    type: int
  owners:
    description: With O(source=fanout), the node (position in O(peers)) that fetches each blob from the hub, by
      blob name (sha256, or git blob id); blobs not listed go to the nodes in turn over the manifest's order.
    type: dict
  peer_wait:
    description: With O(source=fanout), seconds a node waits for a file nobody serves yet after the node that
      should fetch it (its owner, then the next ones) stopped showing progress, before it fetches the file from
      the hub itself. At least three times O(progress_interval), which is how often the owner's progress changes.
    type: float
    default: 120
  peer_poll_interval:
    description: With O(source=fanout), seconds between two polls of each peer's listing and progress.
    type: float
    default: 1
  manifest:
    description: The RV(manifest) returned by an earlier run (on another host). Used instead of asking the hub,
      so O(source=http) and O(source=path) need no hub access. Its revision or commit must equal O(revision).
    type: dict
  manifest_file:
    description: A JSON file on the target holding a manifest, as for O(manifest).
    type: path
  max_workers:
    description: Files transferred (and verified) at once.
    type: int
    default: 8
  verify:
    description: V(stamp) re-hashes only blobs without a valid stamp (new, or size, mtime or inode changed).
      V(full) re-hashes every blob.
    type: str
    choices: [stamp, full]
    default: stamp
  progress_file:
    description: JSON progress document to rewrite every O(progress_interval) seconds (not written in check mode).
    type: path
  progress_interval:
    description: Seconds between two writes of O(progress_file).
    type: float
    default: 5
  timeout:
    description: Seconds to wait to connect, and for each read.
    type: float
    default: 60
  retries:
    description: Further attempts of a file after failures without progress (progress resets the count).
    type: int
    default: 10
  retry_delay:
    description: First wait before a retry, in seconds; doubled after each failure, with jitter.
    type: float
    default: 1
  retry_max_delay:
    description: Longest wait between two attempts, in seconds (also caps C(Retry-After)).
    type: float
    default: 60
  retry_max_time:
    description: Seconds a file may keep failing without progress before the task fails.
    type: float
    default: 1800
  lock_timeout:
    description: Seconds to wait for another run that is writing to the same cache.
    type: float
    default: 86400
attributes:
  check_mode:
    support: full
    details:
      - Resolves the revision and reports the files and bytes that would be downloaded, without writing. Blobs of
        the right size count as present (they are not hashed).
  diff_mode:
    support: none
  platform:
    platforms: posix
notes:
  - C(changed) is true when bytes were written, a blob was replaced or removed, or links or the ref changed.
  - Meant to run as an async task (C(async) with C(poll) set to 0) followed by the C(wait_for_job) action, which
    prints the progress on the controller; with O(downloader=huggingface_hub), as an async task polled by Ansible
    with C(retries) and C(until).
  - Tested with C(huggingface_hub) 2.4.0 and its public API only.
seealso:
  - name: Hugging Face cache layout
    description: How huggingface_hub lays out its cache.
    link: https://huggingface.co/docs/huggingface_hub/guides/manage-cache
"""

EXAMPLES = r"""
- name: Download DeepSeek V3.2 (branch main, resolved and recorded)
  hf_model_snapshot:
    repo_id: deepseek-ai/DeepSeek-V3.2
    revision: main
    hf_home: /srv/huggingface
    progress_file: /var/lib/model-weights/progress.json
  async: 172800
  poll: 0
  register: download_job

- name: Follow it from the controller
  wait_for_job:
    jid: "{{ download_job.ansible_job_id }}"
    progress_file: /var/lib/model-weights/progress.json
  register: weights

- name: Copy it on another node from the first one, without hub access
  hf_model_snapshot:
    repo_id: deepseek-ai/DeepSeek-V3.2
    revision: main
    hf_home: /srv/huggingface
    source: http
    source_url: http://10.20.0.11:8090/
    manifest: "{{ hostvars['node1'].weights.manifest }}"

- name: Fetch a share from the hub and copy the rest from the other nodes (every node at once)
  hf_model_snapshot:
    repo_id: deepseek-ai/DeepSeek-V3.2
    revision: main
    hf_home: /srv/huggingface
    source: fanout
    manifest: "{{ plan.manifest }}"
    peers: [http://10.20.0.11:8091/, http://10.20.0.12:8091/, http://10.20.0.13:8091/]
    peer_index: 1
    progress_file: /var/lib/model-weights/progress.json

- name: What would be downloaded (check mode)
  hf_model_snapshot:
    repo_id: deepseek-ai/DeepSeek-V3.2
    revision: 0123456789abcdef0123456789abcdef01234567
    hf_home: /srv/huggingface
  check_mode: true
  register: plan
"""

RETURN = r"""
repo_id:
  description: The repository.
  returned: success
  type: str
  sample: deepseek-ai/DeepSeek-V3.2
revision:
  description: The revision asked for.
  returned: success
  type: str
  sample: main
commit:
  description: The commit the revision resolved to.
  returned: success
  type: str
  sample: 0123456789abcdef0123456789abcdef01234567
resolved_from_branch:
  description: Whether O(revision) was a branch or tag (not the commit hash itself).
  returned: success
  type: bool
snapshot_path:
  description: The snapshot directory, C(<hf_home>/hub/models--org--name/snapshots/<commit>) (in check mode it
    may not exist yet).
  returned: success
  type: str
source:
  description: Where the bytes came from (hub, http, path or fanout).
  returned: success
  type: str
fanout:
  description: With O(source=fanout), where this node's bytes came from.
  returned: success with O(source=fanout), not in check mode
  type: dict
  contains:
    node:
      description: This node's position in O(peers).
      type: int
    nodes:
      description: Nodes in the fan-out.
      type: int
    blobs_owned:
      description: Blobs this node brings into the fleet (fetched from the hub unless it held them).
      type: int
    bytes_from_hub:
      description: Bytes this node read from the hub (its share, fallbacks, re-fetches after failed verification).
      type: int
    bytes_from_peers:
      description: Bytes this node copied from the other nodes.
      type: int
    bytes_by_peer:
      description: Bytes copied from each peer, by its URL.
      type: dict
    hub_fallbacks:
      description: Files this node fetched from the hub because their owner stopped showing progress.
      type: list
      elements: str
    rejected:
      description: Files whose copy failed verification, with the source it came from (fetched again from the hub).
      type: dict
files_total:
  description: Files in the revision.
  returned: success
  type: int
  sample: 176
bytes_total:
  description: Bytes of all files of the revision.
  returned: success
  type: int
  sample: 689000000000
files_downloaded:
  description: Files whose bytes were written by this run (check mode - files that would be downloaded).
  returned: success
  type: int
bytes_downloaded:
  description: Bytes written by this run (check mode - bytes that would be transferred, partial files deducted).
  returned: success
  type: int
bytes_resumed:
  description: Bytes of partial files found at the start and continued (not fetched again).
  returned: success
  type: int
bytes_needed:
  description: Disk bytes the snapshot still needed when the download phase started (check mode - now).
  returned: success
  type: int
files_refetched:
  description: Paths whose bytes failed verification (on disk or just downloaded) and were fetched again.
  returned: success
  type: list
  elements: str
orphans_removed:
  description: Temp files of killed huggingface_hub runs that were removed (check mode - would be).
  returned: success
  type: list
  elements: str
files_to_download:
  description: Paths that would be downloaded.
  returned: check mode
  type: list
  elements: str
elapsed_seconds:
  description: Duration of the run.
  returned: success
  type: float
manifest:
  description: The revision's files with sizes and hashes, to give to O(manifest) on other hosts.
  returned: success
  type: dict
  contains:
    format:
      description: Manifest format version (1).
      type: int
    repo_id:
      description: The repository.
      type: str
    revision:
      description: The revision it was resolved from.
      type: str
    commit:
      description: The commit.
      type: str
    files:
      description: One entry per file - C(path), C(size), C(blob_id) (git object id) and C(sha256) (LFS files,
        otherwise null).
      type: list
      elements: dict
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible.module_utils.hf_weights import (
    TESTED_HUGGINGFACE_HUB,
    Hub,
    LocalPath,
    Manifest,
    PeerHttp,
    SnapshotSync,
    TransferSettings,
    WeightsError,
    load_manifest_file,
)
from ansible.module_utils.hf_fanout import Fanout, FanoutSync

ARGUMENT_SPEC = {
    "repo_id": {"type": "str", "required": True},
    "revision": {"type": "str", "default": "main"},
    "hf_home": {"type": "path", "required": True},
    "endpoint": {"type": "str"},
    "token": {"type": "str", "no_log": True},
    "downloader": {"type": "str", "choices": ["resumable", "huggingface_hub"], "default": "resumable"},
    "source": {"type": "str", "choices": ["hub", "http", "path", "fanout"], "default": "hub"},
    "source_url": {"type": "str"},
    "source_path": {"type": "path"},
    "peers": {"type": "list", "elements": "str"},
    "peer_index": {"type": "int"},
    "owners": {"type": "dict"},
    "peer_wait": {"type": "float", "default": 120},
    "peer_poll_interval": {"type": "float", "default": 1},
    "manifest": {"type": "dict"},
    "manifest_file": {"type": "path"},
    "max_workers": {"type": "int", "default": 8},
    "verify": {"type": "str", "choices": ["stamp", "full"], "default": "stamp"},
    "progress_file": {"type": "path"},
    "progress_interval": {"type": "float", "default": 5},
    "timeout": {"type": "float", "default": 60},
    "retries": {"type": "int", "default": 10},
    "retry_delay": {"type": "float", "default": 1},
    "retry_max_delay": {"type": "float", "default": 60},
    "retry_max_time": {"type": "float", "default": 1800},
    "lock_timeout": {"type": "float", "default": 86400},
}


def main() -> None:
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        required_if=[("source", "http", ["source_url"]), ("source", "path", ["source_path"]),
                     ("source", "fanout", ["peers", "peer_index", "progress_file"]),
                     ("source", "fanout", ["manifest", "manifest_file"], True)],
        mutually_exclusive=[("manifest", "manifest_file")],
        supports_check_mode=True,
    )
    params = module.params
    try:
        import huggingface_hub
    except ImportError as error:
        module.fail_json(msg=missing_required_lib(f"huggingface_hub=={TESTED_HUGGINGFACE_HUB}"),
                         exception=str(error))
    if huggingface_hub.__version__ != TESTED_HUGGINGFACE_HUB:
        module.warn(f"huggingface_hub {huggingface_hub.__version__} is installed; this module is tested with "
                    f"{TESTED_HUGGINGFACE_HUB}.")
    if params["max_workers"] < 1:
        module.fail_json(msg="max_workers must be at least 1")
    if params["source"] == "fanout" and params["peer_wait"] < 3 * params["progress_interval"]:
        module.fail_json(msg=f"peer_wait ({params['peer_wait']:g} s) must be at least three times progress_interval "
                             f"({params['progress_interval']:g} s): a node's progress file is the sign that it is "
                             "still downloading")

    settings = TransferSettings(
        max_workers=params["max_workers"], timeout=params["timeout"], retries=params["retries"],
        retry_delay=params["retry_delay"], retry_max_delay=params["retry_max_delay"],
        retry_max_time=params["retry_max_time"], progress_interval=params["progress_interval"],
        lock_timeout=params["lock_timeout"],
    )
    hub = Hub(params["repo_id"], endpoint=params["endpoint"], token=params["token"], settings=settings)
    sources = {
        "hub": lambda: hub,
        "http": lambda: PeerHttp(params["source_url"], settings),
        "path": lambda: LocalPath(params["source_path"]),
        "fanout": lambda: Fanout(hub, params["peers"], params["peer_index"], owners=params["owners"],
                                 peer_wait=params["peer_wait"], poll_interval=params["peer_poll_interval"],
                                 timeout=params["timeout"]),
    }
    try:
        manifest = None
        if params["manifest"] is not None:
            manifest = Manifest.from_dict(params["manifest"])
        elif params["manifest_file"] is not None:
            manifest = load_manifest_file(params["manifest_file"])
        runner = FanoutSync if params["source"] == "fanout" else SnapshotSync
        sync = runner(params["hf_home"], params["repo_id"], params["revision"],
                      source=sources[params["source"]](), settings=settings, verify=params["verify"],
                      progress_file=params["progress_file"], check_mode=module.check_mode, hub=hub,
                      downloader=params["downloader"])
        result = sync.run(manifest)
    except WeightsError as error:
        module.fail_json(msg=str(error))
    except OSError as error:  # e.g. EIO reading a blob, EACCES in hf_home
        module.fail_json(msg=f"{params['repo_id']} in {params['hf_home']}: {error}")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
