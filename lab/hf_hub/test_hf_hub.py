"""The hub stand-in, exercised by the real huggingface_hub 2.4.0 client.

Servers run as subprocesses on loopback ports; the client runs through `hub_client.py` in a fresh process
configured only by environment variables (HF_ENDPOINT, HF_HUB_CACHE, HF_TOKEN, timeouts), as the product runs
it. Several tests pin down how 2.4.0 behaves on failures, which the product has to live with:

- a truncated body (peer closes early) is retried in-process up to 5 times, resuming with a Range request from
  the last 10 MiB boundary written to disk (the client reads in 10 MiB chunks); smaller files restart from 0;
- a connection reset (RST) raises httpx2.ReadError at once: no retry, the whole call fails;
- a 5xx from the CDN is not retried; a 5xx on the first API call fails snapshot_download at once;
- the temp file of a failed download is deleted, and a killed run leaves an orphan `<etag>.<uuid>.incomplete`
  that no later run reuses: there is no resume across runs;
- the client never checks sha256: corrupted bytes of the right length are stored as the file.

With `--storage xet` every shard is Xet-backed, as on today's hub: the client hands such files to hf_xet (which
gets a token, then fails at the stand-in's CAS, whose protocol is not reproduced), or with HF_HUB_DISABLE_XET=1
follows the redirect to the Xet bridge over plain HTTP. A 429 with the hub's RateLimit headers is waited out.
"""

import ast
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from huggingface_hub.utils import parse_ratelimit_headers

from lab.hf_hub.hub_process import HubProcess

HERE = Path(__file__).parent
SERVER = HERE / "server.py"
CLIENT = HERE / "hub_client.py"
REPO = "deepseek-ai/DeepSeek-V3.2"
SHARD = "model-00002-of-000163.safetensors"
SHARD_PATTERN = re.compile(r"model-(\d{5})-of-000163\.safetensors")
TOKEN = "hf_GrantedTokenForTheStandInHub"
TOKEN_WITHOUT_ACCESS = "hf_PendingAccessRequestToken"
BAD_TOKEN = "hf_RevokedOrMistypedToken"
TEN_MIB = 10 * 1024 * 1024
TIMEOUT = 60


def start_hub(tmp_path_factory: pytest.TempPathFactory, name: str, *args: str):
    hub = HubProcess(list(args), tmp_path_factory.mktemp(name) / "hub.log")
    try:
        yield hub
    finally:
        hub.stop()


@pytest.fixture(scope="module")
def main_hub(tmp_path_factory):
    yield from start_hub(tmp_path_factory, "main_hub", "--tree-page-size", "40", "--token", TOKEN,
                         "--revision-branch", "stable")


@pytest.fixture
def hub(main_hub):
    main_hub.reset()
    yield main_hub
    main_hub.reset()


def client_env(hub: HubProcess, home: Path, **overrides: str) -> dict:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "HUGGING_FACE"))}
    env.update(HF_ENDPOINT=hub.url, HF_HOME=str(home / "hf_home"), HF_HUB_CACHE=str(home / "cache"),
               HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_PROGRESS_BARS="1", **overrides)
    return env


def run_client(hub: HubProcess, home: Path, *ops: dict, **env: str) -> tuple[list[dict], str]:
    """Run client operations in a fresh process; returns their outcomes and the client's stderr."""
    completed = subprocess.run([sys.executable, str(CLIENT), json.dumps(list(ops))], capture_output=True, text=True,
                               env=client_env(hub, home, **env), timeout=TIMEOUT, check=True)
    return json.loads(completed.stdout), completed.stderr


def result(outcome: dict):
    assert "error" not in outcome, outcome["error"]
    return outcome["result"]


def error(outcome: dict) -> dict:
    assert "error" in outcome, f"expected an error, got {outcome}"
    return outcome["error"]


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def blobs_dir(home: Path) -> Path:
    return home / "cache" / "models--deepseek-ai--DeepSeek-V3.2" / "blobs"


def lfs_sha256(hub: HubProcess, home: Path, filename: str) -> str:
    (outcome,), _ = run_client(hub, home, {"op": "file_metadata", "filename": filename})
    return result(outcome)["etag"]


# ---------------------------------------------------------------------------------------------------------------
# Full download and metadata


@pytest.fixture(scope="module")
def downloaded(main_hub, tmp_path_factory):
    """One full snapshot of main, with the metadata and the server's counters of that run."""
    main_hub.reset()
    home = tmp_path_factory.mktemp("snapshot")
    (snapshot, info), _ = run_client(main_hub, home, {"op": "snapshot"}, {"op": "model_info", "files_metadata": True})
    return home, Path(result(snapshot)), result(info), main_hub.control("GET", "stats")


def test_snapshot_has_every_file_with_the_advertised_hashes(downloaded, main_hub):
    _, snapshot, info, _ = downloaded
    assert snapshot.name == main_hub.info["pinned_commit"] == info["sha"]
    local = sorted(str(p.relative_to(snapshot)) for p in snapshot.rglob("*") if p.is_file())
    assert local == sorted(s["rfilename"] for s in info["siblings"])
    for sibling in info["siblings"]:
        data = (snapshot / sibling["rfilename"]).read_bytes()
        assert len(data) == sibling["size"]
        if sibling["lfs"]:
            assert hashlib.sha256(data).hexdigest() == sibling["lfs"]["sha256"]
        else:
            assert git_blob_oid(data) == sibling["blob_id"]


def test_snapshot_fetched_each_file_once_lfs_through_the_cdn(downloaded):
    _, _, info, stats = downloaded
    for sibling in info["siblings"]:
        counters = stats["files"][sibling["rfilename"]]
        assert counters["get"] == 1 and counters["bodies_completed"] == 1
        assert counters["bytes_sent"] == sibling["size"]
        assert counters["redirect"] == (1 if sibling["lfs"] else 0)


def test_second_snapshot_run_fetches_nothing(downloaded, main_hub):
    home, snapshot, _, _ = downloaded
    main_hub.reset()
    (outcome,), _ = run_client(main_hub, home, {"op": "snapshot"})
    assert result(outcome) == str(snapshot)
    stats = main_hub.control("GET", "stats")
    assert not any(counters["get"] or counters["head"] for counters in stats["files"].values())
    # The branch is resolved again; the tree listing of a known commit comes from the client's cache.
    assert stats["api"] == {"model_info": 1}


def test_index_maps_tensors_to_every_shard_and_sums_tensor_bytes(downloaded):
    _, snapshot, _, _ = downloaded
    index = json.loads((snapshot / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert shards == [f"model-{i:05d}-of-000163.safetensors" for i in range(1, 164)]
    tensor_bytes, tensor_names = 0, set()
    for shard in shards:
        raw = (snapshot / shard).read_bytes()
        header_size = int.from_bytes(raw[:8], "little")
        header = json.loads(raw[8:8 + header_size])
        header.pop("__metadata__")
        tensor_names |= set(header)
        end = max(t["data_offsets"][1] for t in header.values())
        assert 8 + header_size + end == len(raw)
        tensor_bytes += end
    assert tensor_names == set(index["weight_map"])
    assert index["metadata"]["total_size"] == tensor_bytes


def test_repo_files_look_like_the_real_repository(downloaded):
    _, snapshot, _, _ = downloaded
    config = json.loads((snapshot / "config.json").read_text())
    assert config["architectures"] == ["DeepseekV32ForCausalLM"]
    assert config["max_position_embeddings"] == 163840
    assert "MIT License" in (snapshot / "LICENSE").read_text()
    assert (snapshot / "encoding" / "encoding_dsv32.py").is_file()
    assert not (snapshot / "chat_template.jinja").exists()
    assert "chat_template" not in json.loads((snapshot / "tokenizer_config.json").read_text())


def test_model_info_gives_sha256_and_sizes(hub, tmp_path):
    outcomes, _ = run_client(hub, tmp_path, {"op": "model_info", "files_metadata": True},
                             {"op": "model_info"})
    with_blobs, names_only = result(outcomes[0]), result(outcomes[1])
    shards = [s for s in with_blobs["siblings"] if SHARD_PATTERN.fullmatch(s["rfilename"])]
    assert sorted(int(SHARD_PATTERN.fullmatch(s["rfilename"])[1]) for s in shards) == list(range(1, 164))
    assert all(re.fullmatch(r"[0-9a-f]{64}", s["lfs"]["sha256"]) and s["lfs"]["size"] == s["size"] for s in shards)
    assert all(s["lfs"] is None for s in with_blobs["siblings"] if s not in shards)
    total = sum(s["size"] for s in with_blobs["siblings"])
    assert 0.9 * 163 * 64 * 1024 < total < 1.1 * 163 * 64 * 1024 + 1_000_000
    assert requests.get(f"{hub.url}/api/models/{REPO}", timeout=10).json()["usedStorage"] == total
    assert all(s["size"] is None for s in names_only["siblings"])


def test_tree_listing_is_paginated_and_complete(hub, tmp_path):
    outcomes, _ = run_client(hub, tmp_path, {"op": "tree", "recursive": True}, {"op": "tree"},
                             {"op": "tree", "path_in_repo": "inference"},
                             {"op": "paths_info", "paths": ["config.json", "inference", "no-such-file"]})
    recursive, root, inference, paths = (result(o) for o in outcomes)
    assert len([e for e in recursive if SHARD_PATTERN.fullmatch(e["path"])]) == 163
    assert len(recursive) == 176 + 3  # files + assets/, encoding/, inference/
    # Pages of 40: 179 entries recursively, 176 at the root (the shards sit there), 3 in inference/.
    assert hub.control("GET", "stats")["api"]["tree"] == 5 + 5 + 1
    assert {e["path"] for e in root if e["type"] == "directory"} == {"assets", "encoding", "inference"}
    assert all("/" not in e["path"] for e in root)
    assert sorted(e["path"] for e in inference) == [
        "inference/config_671B_v3.2.json", "inference/generate.py", "inference/requirements.txt"]
    assert [(e["path"], e["type"]) for e in paths] == [("config.json", "file"), ("inference", "directory")]


# ---------------------------------------------------------------------------------------------------------------
# Revisions, repositories and auth


def test_revision_by_branch_alias_and_by_sha(hub, tmp_path):
    sha = hub.info["pinned_commit"]
    outcomes, _ = run_client(hub, tmp_path, *({"op": "download", "filename": "config.json", "revision": rev}
                                              for rev in ("main", "stable", sha)),
                             {"op": "file_metadata", "filename": "config.json", "revision": "stable"})
    paths = [Path(result(o)) for o in outcomes[:3]]
    assert all(path.parent.name == sha for path in paths)
    assert (tmp_path / "cache" / "models--deepseek-ai--DeepSeek-V3.2" / "refs" / "stable").read_text() == sha
    assert result(outcomes[3])["commit_hash"] == sha


def test_unknown_revision_raises_revision_not_found(hub, tmp_path):
    outcomes, _ = run_client(hub, tmp_path, {"op": "snapshot", "revision": "no-such-branch"},
                             {"op": "model_info", "revision": "v9.9"},
                             {"op": "download", "filename": "config.json", "revision": "0" * 40})
    for outcome in outcomes:
        assert error(outcome)["type"] == "RevisionNotFoundError"
        assert error(outcome)["status"] == 404


@pytest.mark.parametrize(("token", "status"), [(None, 401), (TOKEN, 404)])
def test_missing_repo_raises_repository_not_found(hub, tmp_path, token, status):
    env = {"HF_TOKEN": token} if token else {}
    outcomes, _ = run_client(hub, tmp_path, {"op": "snapshot", "repo_id": "deepseek-ai/DeepSeek-V9"},
                             {"op": "model_info", "repo_id": "deepseek-ai/DeepSeek-V9"}, **env)
    for outcome in outcomes:
        assert error(outcome)["type"] == "RepositoryNotFoundError"
        assert error(outcome)["status"] == status


def test_invalid_token_is_rejected_even_for_a_public_repo(hub, tmp_path):
    (outcome,), _ = run_client(hub, tmp_path, {"op": "snapshot"}, HF_TOKEN=BAD_TOKEN)
    assert error(outcome)["type"] == "HfHubHTTPError"
    assert error(outcome)["status"] == 401
    assert "Invalid credentials in Authorization header" in error(outcome)["message"]


@pytest.fixture(scope="module")
def gated_hub(tmp_path_factory):
    yield from start_hub(tmp_path_factory, "gated_hub", "--gated", "--token", TOKEN,
                         "--token-without-access", TOKEN_WITHOUT_ACCESS)


@pytest.mark.parametrize(("token", "expected", "status"), [
    (None, "GatedRepoError", 401),
    (TOKEN_WITHOUT_ACCESS, "GatedRepoError", 403),
    (BAD_TOKEN, "HfHubHTTPError", 401),
    (TOKEN, None, None),
])
def test_gated_repo(gated_hub, tmp_path, token, expected, status):
    env = {"HF_TOKEN": token} if token else {}
    info, snapshot = run_client(gated_hub, tmp_path, {"op": "model_info"},
                                {"op": "snapshot", "allow_patterns": ["*.json"]}, **env)[0]
    if token != BAD_TOKEN:  # metadata of a gated repo is public; only files are gated
        assert result(info)["gated"] == "manual"
    if expected is None:
        assert Path(result(snapshot), "config.json").is_file()
    else:
        assert (error(snapshot)["type"], error(snapshot)["status"]) == (expected, status)


# ---------------------------------------------------------------------------------------------------------------
# HTTP details


def test_range_requests_follow_the_cdn_redirect(hub):
    url = f"{hub.url}/{REPO}/resolve/main/{SHARD}"
    whole = requests.get(url, timeout=10)
    assert [r.status_code for r in whole.history] == [302]
    assert whole.history[0].headers["X-Linked-Size"] == str(len(whole.content))
    part = requests.get(url, headers={"Range": "bytes=100-199"}, timeout=10)
    assert part.status_code == 206
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(whole.content)}"
    assert part.content == whole.content[100:200]
    tail = requests.get(url, headers={"Range": "bytes=-10"}, timeout=10)
    assert tail.status_code == 206 and tail.content == whole.content[-10:]
    beyond = requests.get(url, headers={"Range": f"bytes={len(whole.content)}-"}, timeout=10)
    assert beyond.status_code == 416 and beyond.headers["Content-Range"] == f"bytes */{len(whole.content)}"
    config = requests.get(f"{hub.url}/{REPO}/resolve/main/config.json", headers={"Range": "bytes=0-0"}, timeout=10)
    assert config.status_code == 206 and config.content == b"{" and not config.history


def test_access_log_has_one_line_per_request_and_no_token(hub):
    requests.get(f"{hub.url}/api/models/{REPO}", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    log = hub.log_path.read_text()
    assert f'hub "GET /api/models/{REPO}" 200 ' in log
    assert TOKEN not in log


def test_control_endpoint_rejects_malformed_faults(hub):
    response = requests.post(f"{hub.url}/_sim/faults", json={"faults": [{"kind": "explode"}]}, timeout=10)
    assert response.status_code == 400
    assert hub.control("GET", "faults")["faults"] == []


def test_server_uses_only_the_standard_library():
    """server.py and its hub/ package import the standard library and each other, nothing else."""
    modules = set()
    for path in [SERVER, *sorted((HERE / "hub").glob("*.py"))]:
        tree = ast.parse(path.read_text())
        modules |= {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                    for alias in node.names}
        modules |= {node.module.split(".")[0] for node in ast.walk(tree)
                    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0}
    assert modules <= set(sys.stdlib_module_names) | {"__future__", "hub"}


# ---------------------------------------------------------------------------------------------------------------
# Faults: how huggingface_hub 2.4.0 copes


def test_truncated_small_file_is_retried_from_byte_zero(hub, tmp_path):
    hub.faults({"kind": "drop", "file": SHARD, "after_bytes": 20_000, "times": 1})
    (outcome,), stderr = run_client(hub, tmp_path, {"op": "download", "filename": SHARD})
    path = Path(result(outcome))
    assert "Trying to resume download" in stderr
    counters = hub.file_stats(SHARD)
    # Bytes sit in the client's 10 MiB read buffer when the peer closes: nothing to resume from.
    assert (counters["get"], counters["range_get"], counters["bodies_cut"]) == (2, 0, 1)
    assert counters["bytes_sent"] == 20_000 + path.stat().st_size
    assert sha256_file(path) == lfs_sha256(hub, tmp_path, SHARD)


@pytest.fixture(scope="module")
def big_hub(tmp_path_factory):
    """Shards of about 24 MB, larger than the client's 10 MiB read chunk (hashed only when asked for)."""
    yield from start_hub(tmp_path_factory, "big_hub", "--shard-bytes", "24000000")


def test_truncated_large_file_resumes_with_a_range_request(big_hub, tmp_path):
    big_hub.reset()
    big_hub.faults({"kind": "drop", "file": SHARD, "after_bytes": 15_000_000, "times": 1})
    (outcome,), _ = run_client(big_hub, tmp_path, {"op": "download", "filename": SHARD})
    path = Path(result(outcome))
    size = path.stat().st_size
    counters = big_hub.file_stats(SHARD)
    assert (counters["get"], counters["range_get"]) == (2, 1)
    # The retry asks for the rest from the last full 10 MiB chunk written to the temp file.
    assert counters["bytes_sent"] == 15_000_000 + size - TEN_MIB
    assert sha256_file(path) == lfs_sha256(big_hub, tmp_path, SHARD)


def test_connection_reset_fails_at_once_and_next_run_starts_over(hub, tmp_path):
    hub.faults({"kind": "drop", "mode": "reset", "file": SHARD, "after_bytes": 20_000, "times": 1})
    (outcome,), _ = run_client(hub, tmp_path, {"op": "download", "filename": SHARD})
    assert error(outcome)["type"] == "ReadError"  # httpx2.ReadError: not in http_get's retry list
    assert hub.file_stats(SHARD)["get"] == 1
    assert list(blobs_dir(tmp_path).iterdir()) == []  # the temp file was deleted
    hub.control("DELETE", "stats")
    (outcome,), _ = run_client(hub, tmp_path, {"op": "download", "filename": SHARD})
    counters = hub.file_stats(SHARD)
    assert (counters["range_get"], counters["bytes_sent"]) == (0, Path(result(outcome)).stat().st_size)


def test_killed_download_leaves_an_orphan_that_is_never_reused(big_hub, tmp_path):
    big_hub.reset()
    big_hub.faults(throttle_bps=16_000_000)
    process = subprocess.Popen([sys.executable, str(CLIENT), json.dumps([{"op": "download", "filename": SHARD}])],
                               env=client_env(big_hub, tmp_path), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        deadline, partial = time.monotonic() + 20, []
        while not partial and time.monotonic() < deadline:
            time.sleep(0.05)
            partial = [p for p in blobs_dir(tmp_path).glob("*.incomplete") if p.stat().st_size >= TEN_MIB] \
                if blobs_dir(tmp_path).is_dir() else []
        process.kill()
    finally:
        process.wait(timeout=10)
    assert len(partial) == 1, "the download never reached 10 MiB on disk"
    orphan = partial[0]
    big_hub.reset()
    (outcome,), _ = run_client(big_hub, tmp_path, {"op": "download", "filename": SHARD})
    size = Path(result(outcome)).stat().st_size
    counters = big_hub.file_stats(SHARD)
    assert (counters["range_get"], counters["bytes_sent"]) == (0, size)  # downloaded again from byte 0
    assert orphan.exists() and orphan.stat().st_size >= TEN_MIB  # left behind, using disk space
    assert len(list(blobs_dir(tmp_path).glob("*.incomplete"))) == 1


def test_corrupted_bytes_are_stored_without_detection(hub, tmp_path):
    hub.faults({"kind": "corrupt", "file": SHARD, "times": 1})
    (outcome,), _ = run_client(hub, tmp_path, {"op": "download", "filename": SHARD})
    path = Path(result(outcome))
    expected = lfs_sha256(hub, tmp_path, SHARD)
    assert sha256_file(path) != expected  # same size, so the client's only check (size) passes
    (outcome,), _ = run_client(hub, tmp_path, {"op": "download", "filename": SHARD, "force_download": True})
    assert sha256_file(Path(result(outcome))) == expected


def test_throttle_slows_transfers(hub):
    url = f"{hub.url}/{REPO}/resolve/main/{SHARD}"
    started = time.monotonic()
    size = len(requests.get(url, timeout=10).content)
    unthrottled = time.monotonic() - started
    hub.faults(throttle_bps=200_000)
    started = time.monotonic()
    assert len(requests.get(url, timeout=10).content) == size
    throttled = time.monotonic() - started
    assert throttled >= 0.8 * size / 200_000
    assert throttled > 3 * unthrottled


def test_5xx_on_file_metadata_is_retried_until_success(hub, tmp_path):
    hub.faults({"kind": "status", "status": 503, "path": "*/resolve/*", "times": 2})
    (outcome,), _ = run_client(hub, tmp_path, {"op": "download", "filename": "config.json"})
    assert Path(result(outcome)).is_file()
    stats = hub.control("GET", "stats")
    assert stats["statuses"]["503"] == 2 and stats["files"]["config.json"]["get"] == 1


def test_5xx_on_first_api_call_fails_snapshot_without_retry(hub, tmp_path):
    hub.faults({"kind": "status", "status": 500, "path": "/api/*", "times": 1})
    outcomes, _ = run_client(hub, tmp_path, {"op": "snapshot", "allow_patterns": ["config.json"]},
                             {"op": "snapshot", "allow_patterns": ["config.json"]})
    assert error(outcomes[0])["type"] == "LocalEntryNotFoundError"
    assert "500" in error(outcomes[0])["message"]
    assert Path(result(outcomes[1]), "config.json").is_file()


def test_5xx_from_the_cdn_fails_the_download_without_retry(hub, tmp_path):
    hub.faults({"kind": "status", "status": 503, "path": "/repos/*", "times": 1})
    (outcome,), _ = run_client(hub, tmp_path, {"op": "download", "filename": SHARD})
    assert (error(outcome)["type"], error(outcome)["status"]) == ("HfHubHTTPError", 503)


def test_5xx_window_ends_after_its_seconds(hub):
    hub.faults({"kind": "status", "status": 502, "for_seconds": 1})
    url = f"{hub.url}/api/models/{REPO}"
    assert requests.get(url, timeout=10).status_code == 502
    time.sleep(1.1)
    assert requests.get(url, timeout=10).status_code == 200


def test_hang_makes_the_metadata_call_time_out_then_retry(hub, tmp_path):
    hub.faults({"kind": "hang", "seconds": 3, "method": "HEAD", "file": "config.json", "times": 1})
    (outcome,), _ = run_client(hub, tmp_path, {"op": "download", "filename": "config.json"}, HF_HUB_ETAG_TIMEOUT="1")
    assert Path(result(outcome)).is_file()  # it gave up on the hung call after 1 s and asked again
    assert hub.control("GET", "faults")["faults"][0]["fired"] == 1
    assert hub.file_stats("config.json")["head"] == 1  # the hung call is never answered


def test_stalled_body_times_out_and_is_fetched_again(hub, tmp_path):
    hub.faults({"kind": "stall", "file": "config.json", "after_bytes": 100, "seconds": 3, "times": 1})
    (outcome,), stderr = run_client(hub, tmp_path, {"op": "download", "filename": "config.json"},
                                    HF_HUB_DOWNLOAD_TIMEOUT="1")
    assert Path(result(outcome)).is_file()
    assert "timed out" in stderr and hub.file_stats("config.json")["get"] == 2


# ---------------------------------------------------------------------------------------------------------------
# Real-size metadata and a moved branch


@pytest.fixture(scope="module")
def real_hub(tmp_path_factory):
    yield from start_hub(tmp_path_factory, "real_hub", "--size-profile", "real")


def test_real_size_profile_reports_689_gb_and_serves_no_shard(real_hub, tmp_path):
    outcomes, _ = run_client(real_hub, tmp_path, {"op": "model_info", "files_metadata": True},
                             {"op": "dry_run"}, {"op": "file_metadata", "filename": SHARD},
                             {"op": "download", "filename": "model.safetensors.index.json"},
                             {"op": "download", "filename": SHARD})
    info, dry_run, metadata, index_path, shard = outcomes
    sizes = {s["rfilename"]: s["size"] for s in result(info)["siblings"]}
    total = sum(sizes.values())
    assert 685e9 < total < 693e9  # about 689 GB = 642 GiB
    shard_sizes = [size for name, size in sizes.items() if SHARD_PATTERN.fullmatch(name)]
    assert len(shard_sizes) == 163 and all(4.1e9 < size < 4.4e9 for size in shard_sizes)
    assert {f["filename"]: f["file_size"] for f in result(dry_run)} == sizes
    assert result(metadata)["size"] == sizes[SHARD]
    index = json.loads(Path(result(index_path)).read_text())
    assert 0 < sum(shard_sizes) - index["metadata"]["total_size"] < 163 * 8192  # minus the shard headers
    assert (error(shard)["type"], error(shard)["status"]) == ("HfHubHTTPError", 501)
    assert "serves metadata only" in error(shard)["message"]


@pytest.fixture(scope="module")
def moved_hub(tmp_path_factory):
    yield from start_hub(tmp_path_factory, "moved_hub", "--extra-commit")


def test_moved_branch_downloads_only_the_changed_file(moved_hub, tmp_path):
    pinned, head = moved_hub.info["pinned_commit"], moved_hub.info["branches"]["main"]
    assert pinned != head
    some_files = ["*.md", "*.json", "model-0000[1-4]-*"]
    (old,), _ = run_client(moved_hub, tmp_path, {"op": "snapshot", "revision": pinned, "allow_patterns": some_files})
    moved_hub.control("DELETE", "stats")
    (new,), _ = run_client(moved_hub, tmp_path, {"op": "snapshot", "allow_patterns": some_files})
    assert Path(result(old)).name == pinned and Path(result(new)).name == head
    counters = moved_hub.control("GET", "stats")["files"]
    assert len(counters) == 1 + 6 + 4  # every selected file was checked (HEAD) against the new commit ...
    assert {path for path, c in counters.items() if c["get"]} == {"README.md"}  # ... only the changed one fetched
    assert Path(result(old), "README.md").read_text() != Path(result(new), "README.md").read_text()


# ---------------------------------------------------------------------------------------------------------------
# Xet storage: the metadata, the token endpoint, the bridge


@pytest.fixture(scope="module")
def xet_hub(tmp_path_factory):
    yield from start_hub(tmp_path_factory, "xet_hub", "--storage", "xet", "--token", TOKEN)


@pytest.fixture
def xet(xet_hub):
    xet_hub.reset()
    yield xet_hub
    xet_hub.reset()


def test_xet_backed_files_are_named_by_their_metadata_and_listing(xet, tmp_path):
    commit = xet.info["pinned_commit"]
    shard, config, tree = run_client(xet, tmp_path, {"op": "file_metadata", "filename": SHARD},
                                     {"op": "file_metadata", "filename": "config.json"},
                                     {"op": "paths_info", "paths": [SHARD, "config.json"]})[0]
    shard, config = result(shard), result(config)
    listed = {entry["path"]: entry for entry in result(tree)}
    assert shard["xet"] == {"file_hash": listed[SHARD]["xet_hash"],
                            "refresh_route": f"{xet.url}/api/models/{REPO}/xet-read-token/{commit}"}
    assert re.fullmatch(r"[0-9a-f]{64}", shard["xet"]["file_hash"])
    assert shard["etag"] == listed[SHARD]["lfs"]["sha256"] and shard["size"] == listed[SHARD]["size"]
    assert shard["location"].startswith(f"{xet.info['bridge_url']}/xet-bridge-us/")
    assert config["xet"] is None and listed["config.json"]["xet_hash"] is None  # git files stay git files


def test_xet_token_endpoint_answers_in_headers_and_json(xet):
    commit = xet.info["pinned_commit"]
    answer = requests.get(f"{xet.url}/api/models/{REPO}/xet-read-token/main", timeout=10)
    assert answer.status_code == 200
    body = answer.json()
    assert body == {"casUrl": answer.headers["X-Xet-Cas-Url"], "accessToken": answer.headers["X-Xet-Access-Token"],
                    "exp": int(answer.headers["X-Xet-Token-Expiration"])}
    assert body["casUrl"] == xet.info["bridge_url"] and 3000 < body["exp"] - time.time() <= 3600
    missing = requests.get(f"{xet.url}/api/models/{REPO}/xet-read-token/{'0' * 40}", timeout=10)
    assert (missing.status_code, missing.headers["X-Error-Code"]) == (404, "RevisionNotFound")
    assert requests.get(f"{xet.url}/api/models/{REPO}/xet-read-token/{commit}", timeout=10).ok


@pytest.mark.parametrize(("token", "status"), [(None, 401), (TOKEN_WITHOUT_ACCESS, 403), (TOKEN, 200)])
def test_xet_token_of_a_gated_repo_needs_access(gated_hub, token, status):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    answer = requests.get(f"{gated_hub.url}/api/models/{REPO}/xet-read-token/main", headers=headers, timeout=10)
    assert answer.status_code == status
    assert answer.headers.get("X-Error-Code") == (None if status == 200 else "GatedRepo")


def test_client_with_hf_xet_takes_the_xet_path_and_stops_at_the_cas(xet, tmp_path):
    (outcome,), _ = run_client(xet, tmp_path, {"op": "download", "filename": SHARD}, HF_TOKEN=TOKEN)
    assert error(outcome)["type"] == "RuntimeError"
    assert "501 Not Implemented" in error(outcome)["message"] and "/reconstructions/" in error(outcome)["message"]
    stats = xet.stats()
    assert stats["api"]["xet_read_token"] == 1 and stats["api"]["xet_reconstruction"] >= 1
    assert stats["files"][SHARD]["get"] == 0  # never asked the bridge for the bytes
    assert list(blobs_dir(tmp_path).iterdir()) == []


def test_client_without_hf_xet_follows_the_redirect_to_the_bridge_without_the_token(xet, tmp_path):
    (outcome,), _ = run_client(xet, tmp_path, {"op": "download", "filename": SHARD},
                               HF_TOKEN=TOKEN, HF_HUB_DISABLE_XET="1")
    path = Path(result(outcome))
    counters = xet.file_stats(SHARD)
    # HEAD on resolve (302), GET on resolve (302 again: the client does not use the HEAD's location for Xet
    # files), GET on the bridge without the Authorization header.
    assert (counters["redirect"], counters["head"], counters["get"], counters["bodies_completed"],
            counters["with_token"]) == (2, 1, 2, 1, 0)
    assert sha256_file(path) == lfs_sha256(xet, tmp_path, SHARD)
    assert "xet_read_token" not in xet.stats()["api"]


def test_bridge_serves_ranges_and_refuses_bad_or_expired_signatures(xet):
    url = requests.head(f"{xet.url}/{REPO}/resolve/main/{SHARD}", timeout=10).headers["Location"]
    whole = requests.get(url, timeout=10)
    assert whole.status_code == 200 and whole.headers["Accept-Ranges"] == "bytes"
    assert SHARD in whole.headers["Content-Disposition"]
    part = requests.get(url, headers={"Range": "bytes=1000-"}, timeout=10)
    assert part.status_code == 206 and part.content == whole.content[1000:]
    assert part.headers["Content-Range"] == f"bytes 1000-{len(whole.content) - 1}/{len(whole.content)}"
    assert requests.get(url, headers={"Range": f"bytes={len(whole.content)}-"}, timeout=10).status_code == 416
    forged = re.sub(r"X-Amz-Signature=[0-9a-f]+", "X-Amz-Signature=" + "0" * 64, url)
    expired = re.sub(r"X-Amz-Date=\d{8}T", "X-Amz-Date=20200101T", url)
    for refused in (forged, expired):
        answer = requests.get(refused, timeout=10)
        assert answer.status_code == 403 and b"<Code>AccessDenied</Code>" in answer.content


# ---------------------------------------------------------------------------------------------------------------
# Rate limits


def test_rate_limited_answers_carry_the_hubs_headers(hub):
    hub.control("POST", "faults", {"rate_limits": {"resolvers": 2}, "rate_limit_window": 60})
    url = f"{hub.url}/{REPO}/resolve/main/config.json"
    answers = [requests.head(url, timeout=10) for _ in range(3)]
    assert [answer.status_code for answer in answers] == [200, 200, 429]
    limits = [parse_ratelimit_headers(answer.headers) for answer in answers]
    assert [(info.resource_type, info.remaining, info.limit, info.window_seconds) for info in limits] == \
        [("resolvers", 1, 2, 60), ("resolvers", 0, 2, 60), ("resolvers", 0, 2, 60)]
    assert 0 < int(answers[2].headers["Retry-After"]) == limits[2].reset_in_seconds <= 60
    assert requests.get(f"{hub.url}/api/models/{REPO}", timeout=10).headers.get("RateLimit") is None  # api: unlimited


def test_client_waits_out_a_rate_limit(hub, tmp_path):
    hub.control("POST", "faults", {"rate_limits": {"resolvers": 2}, "rate_limit_window": 2})
    started = time.monotonic()
    outcomes, _ = run_client(hub, tmp_path, *({"op": "download", "filename": name}
                                              for name in ("config.json", "generation_config.json")))
    assert all(Path(result(outcome)).is_file() for outcome in outcomes)  # each a HEAD and a GET on resolve
    assert hub.stats()["statuses"]["429"] >= 1
    assert time.monotonic() - started >= 2  # it waited for the window to end
