"""The model_weights downloader (module_utils/hf_weights.py), the hf_model_snapshot module and the wait_for_job
action, against the hub stand-in (lab/hf_hub/server.py) run as a subprocess with small shards.

Every test that talks to the hub runs against both of the stand-in's storages: Git LFS behind a CDN, and Xet
(the hub's default today), whose bytes the downloader reads from the Xet bridge the hub redirects to.

The real huggingface_hub 2.4.0 client is the judge of the result: its verify_repo_checksums must find every file
right, and with HF_HUB_OFFLINE=1 it must resolve the snapshot the downloader wrote. Byte counts come from the
stand-in's /_sim/stats, so "resumed with a Range request" and "not fetched again" are measured on the server
side.
"""

import base64
import dataclasses
import errno
import fcntl
import functools
import hashlib
import http.server
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import threading
import time
from unittest import mock

import pytest
import requests
from ansible.module_utils import hf_weights as hw  # plugins/module_utils/, through tests/unit/conftest.py
from huggingface_hub import HfApi, constants

from plugins.action import wait_for_job
from plugins.filter import model_weights
from tests.helpers import module_runner
from lab.hf_hub.hub_process import HubProcess

REPO = pathlib.Path(__file__).resolve().parents[3]
REPO_ID = "deepseek-ai/DeepSeek-V3.2"
TOKEN = "hf_GrantedTokenForTheStandInHub"
TOKEN_WITHOUT_ACCESS = "hf_PendingAccessRequestToken"
BAD_TOKEN = "hf_RevokedOrMistypedToken"
STORAGE = "hub/models--deepseek-ai--DeepSeek-V3.2"


def shard(index: int) -> str:
    return f"model-{index:05d}-of-000163.safetensors"


FAST = hw.TransferSettings(max_workers=4, timeout=5, retries=3, retry_delay=0.01, retry_max_delay=0.05,
                           retry_max_time=30, progress_interval=0.2, lock_timeout=10)


# Hub stand-in --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["lfs", "xet"])
def stand_in(request, tmp_path_factory):
    # Gated (so tokens matter), main moved past the pinned commit (branch stable).
    server = HubProcess(["--shard-bytes", "16384", "--gated", "--token", TOKEN, "--token-without-access",
                         TOKEN_WITHOUT_ACCESS, "--revision-branch", "stable", "--extra-commit",
                         "--storage", request.param], tmp_path_factory.mktemp("hub") / "hub.log")
    yield server
    server.stop()


@pytest.fixture
def hub(stand_in, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    stand_in.reset()
    yield stand_in
    stand_in.reset()


def sync(hub: HubProcess, home, revision: str = "main", *, source=None, manifest=None, token: str | None = TOKEN,
         repo_id: str = REPO_ID, settings: hw.TransferSettings = FAST, use_hub: bool = True, **options) -> dict:
    client = hw.Hub(repo_id, endpoint=hub.url, token=token, settings=settings)
    runner = hw.SnapshotSync(str(home), repo_id, revision, source=source or client, settings=settings,
                             hub=client if use_hub else None, **options)
    return runner.run(manifest)


@pytest.fixture(scope="module")
def seed(stand_in, tmp_path_factory):
    """One complete download of main, with its progress file; tests copy it before changing anything."""
    stand_in.reset()
    home = tmp_path_factory.mktemp("seed")
    result = sync(stand_in, home, progress_file=str(home / "progress.json"))
    return home, result


def copy_cache(seed, destination: pathlib.Path) -> pathlib.Path:
    shutil.copytree(seed[0] / "hub", destination / "hub", symlinks=True)
    return destination


def manifest_files(result: dict) -> dict:
    return {entry["path"]: entry for entry in result["manifest"]["files"]}


def content_hash(entry: dict, data: bytes) -> str:
    if entry["sha256"]:
        return hashlib.sha256(data).hexdigest()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def blob_path(home, entry: dict) -> pathlib.Path:
    return pathlib.Path(home) / STORAGE / "blobs" / (entry["sha256"] or entry["blob_id"])


def file_stats(hub: HubProcess) -> dict:
    return hub.stats()["files"]


# Full download and the real client ---------------------------------------------------------------------------

OFFLINE_CLIENT = """
import json, sys
from huggingface_hub import hf_hub_download, snapshot_download, try_to_load_from_cache
repo, commit = sys.argv[1:3]
print(json.dumps({
    "by_commit": snapshot_download(repo, revision=commit, local_files_only=True),
    "by_branch": snapshot_download(repo, revision="main"),
    "config": try_to_load_from_cache(repo, "config.json", revision=commit),
    "shard": hf_hub_download(repo, "model-00001-of-000163.safetensors", revision="main"),
}))
"""


def test_full_download_is_what_the_hub_lists_the_client_verifies_and_resolves_offline(hub, seed, tmp_path):
    home, result = seed
    main_commit = hub.info["branches"]["main"]
    listing = requests.get(f"{hub.url}/api/models/{REPO_ID}/revision/main", params={"blobs": "true"},
                           timeout=10).json()
    assert (result["commit"], result["resolved_from_branch"]) == (main_commit, True)
    assert result["files_total"] == len(listing["siblings"]) == 176
    assert result["bytes_total"] == sum(sibling["size"] for sibling in listing["siblings"])
    assert (result["files_downloaded"], result["bytes_downloaded"]) == (176, result["bytes_total"])
    assert result["changed"] and result["files_refetched"] == []
    snapshot = pathlib.Path(result["snapshot_path"])
    assert snapshot == home / STORAGE / "snapshots" / main_commit
    for sibling in listing["siblings"]:
        entry = manifest_files(result)[sibling["rfilename"]]
        expected = sibling["lfs"]["sha256"] if "lfs" in sibling else sibling["blobId"]
        data = (snapshot / sibling["rfilename"]).read_bytes()
        assert content_hash(entry, data) == expected, sibling["rfilename"]
        link = snapshot / sibling["rfilename"]
        assert link.is_symlink() and not os.path.isabs(os.readlink(link))
        assert oct(blob_path(home, entry).stat().st_mode & 0o777) == "0o644"
    assert (home / STORAGE / "refs" / "main").read_text() == main_commit
    assert not list((home / STORAGE / "blobs").glob("*.incomplete"))
    progress = json.loads((home / "progress.json").read_text())
    assert progress["phase"] == "done" and progress["commit"] == main_commit
    assert progress["bytes_done"] == progress["bytes_total"] == result["bytes_total"]
    assert progress["files_done"] == progress["files_total"] == 176
    checked = HfApi(endpoint=hub.url, token=TOKEN).verify_repo_checksums(REPO_ID, revision=main_commit,
                                                                          cache_dir=home / "hub")
    assert (checked.checked_count, checked.mismatches, checked.missing_paths) == (176, [], [])

    copy = copy_cache(seed, tmp_path)
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "HUGGING_FACE"))}
    env.update(HF_HOME=str(copy), HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1")
    completed = subprocess.run([sys.executable, "-c", OFFLINE_CLIENT, REPO_ID, main_commit],
                               capture_output=True, text=True, env=env, timeout=60, check=True)
    offline = json.loads(completed.stdout)
    copied_snapshot = str(copy / STORAGE / "snapshots" / main_commit)
    assert offline["by_commit"] == offline["by_branch"] == copied_snapshot
    assert offline["config"] == f"{copied_snapshot}/config.json"
    assert offline["shard"] == f"{copied_snapshot}/{shard(1)}"


def test_second_run_transfers_nothing_and_reports_unchanged(hub, seed, tmp_path):
    home = copy_cache(seed, tmp_path)
    first = sync(hub, home)  # new inodes: every blob is hashed once, none fetched
    stamps = home / STORAGE / ".hf_weights_verified.json"
    stamped_at = stamps.stat().st_mtime_ns
    hub.control("DELETE", "stats")
    second = sync(hub, home)
    assert not first["changed"] and not second["changed"]
    assert second["files_downloaded"] == second["bytes_downloaded"] == second["bytes_needed"] == 0
    stats = hub.stats()
    assert stats["files"] == {} and stats["api"] == {"model_info": 1}
    assert stamps.stat().st_mtime_ns == stamped_at  # stamps trusted: nothing re-hashed


def snapshot_of_tree(root: pathlib.Path) -> dict:
    return {str(path.relative_to(root)): (path.lstat().st_size, path.lstat().st_mtime_ns)
            for path in sorted(root.rglob("*"))}


def test_check_mode_plans_bytes_and_writes_nothing(hub, seed, tmp_path):
    empty = tmp_path / "empty"
    plan = sync(hub, empty, check_mode=True, progress_file=str(tmp_path / "progress.json"))
    assert plan["changed"] and plan["files_downloaded"] == plan["files_total"] == 176
    assert plan["bytes_downloaded"] == plan["bytes_needed"] == plan["bytes_total"]
    assert len(plan["files_to_download"]) == 176
    assert not empty.exists() and not (tmp_path / "progress.json").exists()

    home = copy_cache(seed, tmp_path / "partly")
    entries = manifest_files(seed[1])
    missing = [shard(3), shard(4), "tokenizer.json"]
    for path in missing:
        blob_path(home, entries[path]).unlink()
    partial = pathlib.Path(str(blob_path(home, entries[shard(3)])) + ".incomplete")
    partial.write_bytes(blob_path(seed[0], entries[shard(3)]).read_bytes()[:1000])
    before = snapshot_of_tree(home)
    plan = sync(hub, home, check_mode=True)
    missing_bytes = sum(entries[path]["size"] for path in missing)
    assert plan["changed"] and plan["files_to_download"] == sorted(missing)
    assert (plan["files_downloaded"], plan["bytes_resumed"]) == (3, 1000)
    assert plan["bytes_downloaded"] == plan["bytes_needed"] == missing_bytes - 1000
    assert hw.bytes_needed(hw.Manifest.from_dict(plan["manifest"]), str(home)) == missing_bytes - 1000
    assert snapshot_of_tree(home) == before
    # The plans asked for one small file's metadata (the access check), and for no file's bytes.
    assert {stats["head"] for stats in file_stats(hub).values()} == {2}
    assert sum(stats["get"] + stats["bytes_sent"] for stats in file_stats(hub).values()) == 0


def test_preflight_counts_only_the_revisions_own_blobs(hub, seed, tmp_path):
    """The role's preflight lists the node's blobs directory and asks the model_weights_bytes_needed filter what
    is missing: another revision's blobs do not count as held, partial files do, and the answer is the one the
    download itself computes on that cache."""
    home = copy_cache(seed, tmp_path / "other-revision")
    entries = manifest_files(seed[1])
    blob_path(home, entries[shard(1)]).unlink()
    partial = pathlib.Path(str(blob_path(home, entries[shard(2)])) + ".incomplete")
    blob_path(home, entries[shard(2)]).rename(partial)
    with partial.open("r+b") as handle:
        handle.truncate(100)
    foreign = blob_path(home, entries[shard(1)]).parent / ("0" * 64)
    foreign.write_bytes(b"x" * 50000)  # an older revision's shard: uses disk, counts for nothing
    plan = sync(hub, home, check_mode=True)
    blobs = {path.name: path.stat().st_size for path in blob_path(home, entries[shard(3)]).parent.iterdir()}
    expected = entries[shard(1)]["size"] + entries[shard(2)]["size"] - 100

    bytes_needed = model_weights.FilterModule().filters()["model_weights_bytes_needed"]
    assert bytes_needed(plan["manifest"], blobs) == expected == plan["bytes_needed"]
    assert bytes_needed(plan["manifest"], {}) == plan["bytes_total"]


# Faults: interrupted bodies, killed runs, corruption, 5xx -----------------------------------------------------


def test_dropped_bodies_from_the_cdn_or_the_xet_bridge_resume_with_a_range_request(hub, tmp_path):
    hub.faults({"kind": "drop", "file": shard(7), "path": hub.content_path, "after_bytes": 5000, "times": 1},
               {"kind": "drop", "file": shard(8), "path": hub.content_path, "after_bytes": 5000, "mode": "reset",
                "times": 1})
    result = sync(hub, tmp_path)
    entries = manifest_files(result)
    stats = file_stats(hub)
    closed, reset = stats[shard(7)], stats[shard(8)]
    assert (closed["bodies_cut"], closed["range_get"], closed["bodies_completed"]) == (1, 1, 1)
    assert closed["bytes_sent"] == entries[shard(7)]["size"]  # the retry asked only for the rest
    # After a reset the bytes in flight may be lost: the retry resumes from what arrived (0 to 5000 bytes).
    assert (reset["bodies_cut"], reset["get"], reset["bodies_completed"]) == (1, 2, 1)
    assert reset["bytes_sent"] <= entries[shard(8)]["size"] + 5000
    for path in (shard(7), shard(8)):
        data = (pathlib.Path(result["snapshot_path"]) / path).read_bytes()
        assert content_hash(entries[path], data) == entries[path]["sha256"]
    # The access log shows where the resumed bytes came from: the CDN for Git LFS, the bridge for Xet; the
    # token of this gated repository went to the hub only.
    listener = "bridge" if hub.info["storage"] == "xet" else "cdn"
    assert f'{listener} "GET {hub.content_path[:-1]}' in hub.log_path.read_text()
    assert hub.stats()["statuses"]["206"] >= 1
    assert sum(counters["with_token"] for counters in stats.values()) == 0


KILLED_RUN = """
import os, signal, sys, time
from plugins.module_utils import hf_weights as hw
home, repo_id, url, token, victim = sys.argv[1:6]
real_write = hw._write_chunk


def killed_at_6000_bytes(handle, data):
    # The victim's partial gets 6000 bytes; once every other file is in place the process is killed (SIGKILL).
    if not handle.name.endswith(victim + ".incomplete"):
        return real_write(handle, data)
    room = 6000 - os.fstat(handle.fileno()).st_size
    real_write(handle, data[:room])
    if len(data) >= room:
        blobs, deadline = os.path.dirname(handle.name), time.monotonic() + 30
        while len([name for name in os.listdir(blobs) if "." not in name]) < 175 and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGKILL)


hw._write_chunk = killed_at_6000_bytes
settings = hw.TransferSettings(max_workers=2, timeout=30)
hub = hw.Hub(repo_id, endpoint=url, token=token, settings=settings)
hw.SnapshotSync(home, repo_id, "main", source=hub, settings=settings, hub=hub).run()
"""


def test_killed_run_resumes_its_partial_and_skips_finished_files(hub, seed, tmp_path):
    entries = manifest_files(seed[1])
    victim = entries[shard(100)]
    blobs = tmp_path / STORAGE / "blobs"
    # `python -c` imports from the current directory: the repository's.
    killed = subprocess.run([sys.executable, "-c", KILLED_RUN, str(tmp_path), REPO_ID, hub.url, TOKEN,
                             victim["sha256"]], cwd=REPO, timeout=60)
    assert killed.returncode == -signal.SIGKILL
    assert len([path for path in blobs.iterdir() if "." not in path.name]) == 175
    assert (blobs / f"{victim['sha256']}.incomplete").stat().st_size == 6000
    hub.reset()
    orphan = blobs / f"{entries[shard(5)]['sha256']}.0123abcd.incomplete"  # as a killed huggingface_hub leaves
    orphan.write_bytes(b"partial bytes")
    os.utime(orphan, (time.time() - 3600,) * 2)

    result = sync(hub, tmp_path)
    stats = file_stats(hub)
    assert set(stats) == {shard(100)}  # nothing finished earlier is fetched again
    assert (stats[shard(100)]["range_get"], stats[shard(100)]["bytes_sent"]) == (1, victim["size"] - 6000)
    assert (result["files_downloaded"], result["bytes_downloaded"]) == (1, victim["size"] - 6000)
    assert result["bytes_resumed"] == 6000 and result["changed"]
    assert result["orphans_removed"] == [str(orphan)] and not orphan.exists()
    data = blob_path(tmp_path, victim).read_bytes()
    assert hashlib.sha256(data).hexdigest() == victim["sha256"]


def flip_a_byte(path: pathlib.Path, keep_mtime: bool) -> None:
    stat = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    with open(path, "r+b") as handle:  # same inode, same size
        handle.write(data)
    if keep_mtime:
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_a_corrupted_blob_is_found_and_only_it_is_fetched_again(hub, seed, tmp_path):
    home = copy_cache(seed, tmp_path)
    entries = manifest_files(seed[1])
    sync(hub, home)  # stamps the copy
    flip_a_byte(blob_path(home, entries[shard(5)]), keep_mtime=True)
    flip_a_byte(blob_path(home, entries["config.json"]), keep_mtime=False)
    hub.control("DELETE", "stats")

    stamped = sync(hub, home)
    # The stamp catches the changed mtime; a silent change (same size, mtime, inode) needs verify=full.
    assert stamped["files_refetched"] == ["config.json"] and stamped["changed"]
    assert set(file_stats(hub)) == {"config.json"}
    hub.control("DELETE", "stats")
    full = sync(hub, home, verify="full")
    assert full["files_refetched"] == [shard(5)]
    assert set(file_stats(hub)) == {shard(5)}
    assert full["bytes_downloaded"] == entries[shard(5)]["size"]
    for path in (shard(5), "config.json"):
        assert content_hash(entries[path], blob_path(home, entries[path]).read_bytes()) == \
            (entries[path]["sha256"] or entries[path]["blob_id"])


def test_corrupt_bytes_from_the_source_are_fetched_again_once(hub, tmp_path):
    hub.faults({"kind": "corrupt", "file": shard(9), "times": 1})
    result = sync(hub, tmp_path / "once")
    assert result["files_refetched"] == [shard(9)]
    assert file_stats(hub)[shard(9)]["get"] == 2

    hub.reset()
    hub.faults({"kind": "corrupt", "file": shard(10)})
    with pytest.raises(hw.WeightsError, match=f"{shard(10)} failed verification twice"):
        sync(hub, tmp_path / "always")
    assert not blob_path(tmp_path / "always", manifest_files(result)[shard(10)]).exists()


def test_server_errors_for_a_while_are_retried(hub, tmp_path):
    hub.faults({"kind": "status", "status": 503, "file": shard(11), "path": hub.content_path, "times": 2},
               {"kind": "status", "status": 502, "file": shard(12), "path": "*/resolve/*", "times": 2},
               {"kind": "status", "status": 500, "path": "/api/*", "times": 1})
    result = sync(hub, tmp_path)
    stats = hub.stats()
    assert stats["statuses"]["503"] == 2 and stats["statuses"]["502"] == 2 and stats["statuses"]["500"] == 1
    assert stats["api"]["model_info"] == 1  # the failed call never reached the handler
    assert result["files_downloaded"] == 176


def test_persistent_server_errors_fail_with_the_file_and_the_status(hub, tmp_path):
    hub.faults({"kind": "status", "status": 503, "file": shard(13), "path": hub.content_path})
    with pytest.raises(hw.WeightsError) as failure:
        sync(hub, tmp_path)
    message = str(failure.value)
    assert shard(13) in message and "giving up after 4 failed attempts" in message and "HTTP 503" in message
    assert not (tmp_path / STORAGE / "snapshots").exists() and not (tmp_path / STORAGE / "refs").exists()


@pytest.mark.parametrize(("overrides", "words"), [
    ({"token": BAD_TOKEN}, ["rejected the token", "model_weights_hf_token"]),
    ({"repo_id": "deepseek-ai/DeepSeek-V9"}, ["deepseek-ai/DeepSeek-V9 was not found", "model_weights_repo_id"]),
    ({"revision": "v9-final"}, ["'v9-final' does not exist", "model_weights_revision"]),
    ({"token": None}, ["gated repository and no token was given", "model_weights_hf_token"]),
    ({"token": TOKEN_WITHOUT_ACCESS}, ["has not been granted access", "model_weights_hf_token"]),
], ids=["bad-token", "missing-repo", "missing-revision", "gated-anonymous", "gated-no-access"])
def test_hub_errors_say_which_variable_to_fix(hub, tmp_path, overrides, words):
    with pytest.raises(hw.WeightsError) as failure:
        sync(hub, tmp_path, **overrides)
    for word in words:
        assert word in str(failure.value)
    assert not list(tmp_path.rglob("blobs/*"))


@pytest.mark.parametrize(("token", "words"), [
    (None, "gated repository and no token was given"),
    (TOKEN_WITHOUT_ACCESS, "has not been granted access"),
], ids=["anonymous", "no-access"])
def test_the_plan_already_sees_that_the_token_cannot_download(hub, tmp_path, token, words):
    """The model info of a gated repository is public; the check-mode plan asks for one file too."""
    with pytest.raises(hw.WeightsError, match=words):
        sync(hub, tmp_path, token=token, check_mode=True)
    assert sync(hub, tmp_path, check_mode=True)["changed"] is True


def test_a_branch_resolves_to_its_commit_and_shares_blobs_with_main(hub, seed, tmp_path):
    home = copy_cache(seed, tmp_path)
    pinned = hub.info["pinned_commit"]
    stable = sync(hub, home, "stable")
    assert (stable["commit"], stable["resolved_from_branch"]) == (pinned, True)
    assert (home / STORAGE / "refs" / "stable").read_text() == pinned
    assert (home / STORAGE / "refs" / "main").read_text() == hub.info["branches"]["main"] != pinned
    # The later commit only edited README.md: every other blob is shared.
    assert stable["files_downloaded"] == 1 and set(file_stats(hub)) == {"README.md"}
    by_commit = sync(hub, home, pinned)
    assert not by_commit["resolved_from_branch"] and not by_commit["changed"]
    assert sorted(path.name for path in (home / STORAGE / "refs").iterdir()) == ["main", "stable"]


def test_a_second_run_waits_for_the_first_and_leaves_its_progress_file_alone(hub, tmp_path):
    lock = tmp_path / "hub" / ".locks" / "models--deepseek-ai--DeepSeek-V3.2" / "hf_weights.lock"
    lock.parent.mkdir(parents=True)
    progress = tmp_path / "progress.json"
    progress.write_text('{"phase": "downloading", "pid": 1}')
    settings = hw.TransferSettings(lock_timeout=0.3, progress_interval=0.05)
    with open(lock, "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(hw.WeightsError, match="another download has held .*hf_weights.lock"):
            sync(hub, tmp_path, settings=settings, progress_file=str(progress))
    assert progress.read_text() == '{"phase": "downloading", "pid": 1}'
    assert hub.stats()["api"] == {}  # it did not even ask the hub


# Fleet mode ---------------------------------------------------------------------------------------------------


@pytest.fixture
def peer(seed):
    """The seed's snapshot directory served like `python3 -m http.server --directory <snapshot>` (no Range)."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=seed[1]["snapshot_path"])
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_fleet_copies_from_a_peer_and_a_path_without_the_hub(hub, seed, peer, tmp_path):
    manifest = hw.Manifest.from_dict(seed[1]["manifest"])
    entries = manifest_files(seed[1])
    over_http = tmp_path / "over_http"
    partial = pathlib.Path(str(blob_path(over_http, entries[shard(2)])) + ".incomplete")
    partial.parent.mkdir(parents=True)
    partial.write_bytes(blob_path(seed[0], entries[shard(2)]).read_bytes()[:3000])
    copied = sync(hub, over_http, source=hw.PeerHttp(peer, FAST), manifest=manifest, use_hub=False)
    from_path = sync(hub, tmp_path / "from_path", source=hw.LocalPath(seed[1]["snapshot_path"]),
                     manifest=manifest, use_hub=False)
    stats = hub.stats()
    assert stats["files"] == {} and stats["api"] == {}
    # http.server ignores Range: the first 3000 bytes are skipped in the stream, not written again.
    assert copied["bytes_resumed"] == 3000 and copied["bytes_downloaded"] == seed[1]["bytes_total"] - 3000
    for result, home in ((copied, over_http), (from_path, tmp_path / "from_path")):
        assert result["commit"] == seed[1]["commit"] and result["files_downloaded"] == 176
        assert (home / STORAGE / "refs" / "main").read_text() == seed[1]["commit"]
        for path, entry in entries.items():
            data = (pathlib.Path(result["snapshot_path"]) / path).read_bytes()
            assert content_hash(entry, data) == (entry["sha256"] or entry["blob_id"]), path


def test_a_manifest_for_another_revision_or_with_unsafe_paths_is_refused(hub, seed, tmp_path):
    manifest = hw.Manifest.from_dict(seed[1]["manifest"])
    with pytest.raises(hw.WeightsError, match="not revision 'stable'"):
        sync(hub, tmp_path, "stable", source=hw.LocalPath("/nonexistent"), manifest=manifest, use_hub=False)
    unsafe = json.loads(json.dumps(seed[1]["manifest"]))
    unsafe["files"][0]["path"] = "../../etc/cron.d/x"
    with pytest.raises(hw.WeightsError, match="unsafe path"):
        hw.Manifest.from_dict(unsafe)
    assert not tmp_path.joinpath("hub").exists()


def test_an_empty_file_is_published_and_linked(tmp_path):
    """A repository may hold an empty file: nothing to fetch, but a blob to publish and a link to write."""
    contents = {"pkg/__init__.py": b"", "config.json": b"{}\n"}
    for path, data in contents.items():
        (tmp_path / "snapshot" / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "snapshot" / path).write_bytes(data)
    files = tuple(hw.ManifestFile(path=path, size=len(data), blob_id=content_hash({"sha256": None}, data))
                  for path, data in contents.items())
    manifest = hw.Manifest(repo_id=REPO_ID, revision="0" * 40, commit="0" * 40, files=files)
    home = tmp_path / "home"
    for run in range(2):
        result = hw.SnapshotSync(str(home), REPO_ID, manifest.commit, source=hw.LocalPath(str(tmp_path / "snapshot")),
                                 settings=FAST).run(manifest)
        assert result["changed"] is (run == 0)
    for path, data in contents.items():
        assert (pathlib.Path(result["snapshot_path"]) / path).read_bytes() == data


def serve(handler_class) -> tuple[http.server.ThreadingHTTPServer, str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler_class)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def test_the_token_never_follows_a_redirect_to_another_origin():
    seen: list[tuple[str, str | None]] = []

    class Recorder(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append((self.path, self.headers.get("Authorization")))
            if self.path.startswith("/hub/"):
                self.send_response(302)
                self.send_header("Location", self.server.next_hop + "/cdn/file")
                self.send_header("Content-Length", "0")
                self.end_headers()
            else:
                self.send_response(200)
                self.send_header("Content-Length", "5")
                self.end_headers()
                self.wfile.write(b"bytes")

        def log_message(self, *args):
            pass

    hub_server, hub_url = serve(Recorder)
    cdn_server, cdn_url = serve(Recorder)
    hub_server.next_hop, cdn_server.next_hop = cdn_url, cdn_url
    item = hw.ManifestFile(path="file", size=5, blob_id="0" * 40)
    try:
        with hw._http_range(hw._opener(environment_proxies=False), hub_url + "/hub/file",
                            {"authorization": f"Bearer {TOKEN}"}, 0, item, 5) as (start, chunks):
            assert (start, b"".join(chunks)) == (0, b"bytes")
    finally:
        for server in (hub_server, cdn_server):
            server.shutdown()
            server.server_close()
    assert seen == [("/hub/file", f"Bearer {TOKEN}"), ("/cdn/file", None)]


# Disk full ----------------------------------------------------------------------------------------------------


def test_a_full_disk_stops_with_a_partial_and_says_what_is_needed(hub, seed, tmp_path, monkeypatch):
    entries = manifest_files(seed[1])
    largest = max(entries.values(), key=lambda entry: entry["size"])  # fetched first
    partial_name = f"{largest['sha256'] or largest['blob_id']}.incomplete"
    real_write = hw._write_chunk

    def full_after_4000_bytes(handle, data):
        if handle.name.endswith(partial_name):
            room = 4000 - os.fstat(handle.fileno()).st_size
            real_write(handle, data[:max(room, 0)])
            if len(data) > room:
                raise OSError(errno.ENOSPC, "No space left on device")
        else:
            real_write(handle, data)

    monkeypatch.setattr(hw, "_write_chunk", full_after_4000_bytes)
    with pytest.raises(hw.DiskFullError) as failure:
        sync(hub, tmp_path, settings=hw.TransferSettings(max_workers=1, retry_delay=0.01))
    message = str(failure.value)
    assert str(tmp_path / STORAGE) in message and "still needs" in message and "are free" in message
    assert f"{seed[1]['bytes_total'] - 4000} bytes" in message
    partial = tmp_path / STORAGE / "blobs" / partial_name
    assert partial.stat().st_size == 4000
    assert not blob_path(tmp_path, largest).exists() and not (tmp_path / STORAGE / "snapshots").exists()

    monkeypatch.setattr(hw, "_write_chunk", real_write)
    hub.control("DELETE", "stats")
    result = sync(hub, tmp_path)
    assert result["bytes_resumed"] == 4000
    assert file_stats(hub)[largest["path"]]["bytes_sent"] == largest["size"] - 4000


def test_not_enough_free_space_fails_before_downloading(hub, tmp_path, monkeypatch):
    monkeypatch.setattr(hw.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10 ** 9, 10 ** 9, 1000))
    with pytest.raises(hw.DiskFullError, match="1000 bytes .* are free"):
        sync(hub, tmp_path)
    assert file_stats(hub) == {}


# The hub's rate limits ------------------------------------------------------------------------------------------


def test_the_hubs_rate_limit_is_waited_out(hub, tmp_path):
    """More resolve requests than the hub's bucket allows in a window: 429s, retried after their Retry-After."""
    hub.control("POST", "faults", {"rate_limits": {"resolvers": 100}, "rate_limit_window": 2})
    started = time.monotonic()
    result = sync(hub, tmp_path, settings=dataclasses.replace(FAST, retry_max_delay=3))
    assert result["files_downloaded"] == 176
    assert hub.stats()["statuses"]["429"] >= 1
    assert time.monotonic() - started >= 2  # nothing more was allowed before the window ended


# The official client as the downloader -------------------------------------------------------------------------


@pytest.fixture
def http_fallback(hub, monkeypatch):
    """The stand-in does not speak Xet's CAS protocol: the client takes its HTTP path through the Xet bridge, as
    HF_HUB_DISABLE_XET=1 makes it do (the client reads the variable at import, so the test sets what it sets)."""
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    return hub


def test_client_downloader_downloads_verifies_and_stamps(http_fallback, tmp_path):
    hub = http_fallback
    first = sync(hub, tmp_path, downloader="huggingface_hub", progress_file=str(tmp_path / "progress.json"))
    assert first["changed"] and (first["files_downloaded"], first["bytes_downloaded"]) == (176, first["bytes_total"])
    assert (tmp_path / STORAGE / "refs" / "main").read_text() == first["commit"]
    for path, entry in manifest_files(first).items():
        data = (pathlib.Path(first["snapshot_path"]) / path).read_bytes()
        assert content_hash(entry, data) == (entry["sha256"] or entry["blob_id"]), path
    assert json.loads((tmp_path / "progress.json").read_text())["phase"] == "done"
    hub.control("DELETE", "stats")
    again = sync(hub, tmp_path, downloader="huggingface_hub")
    assert not again["changed"] and again["bytes_downloaded"] == 0
    assert not any(counters["get"] for counters in file_stats(hub).values())
    stamps = tmp_path / STORAGE / ".hf_weights_verified.json"
    stamped_at = stamps.stat().st_mtime_ns
    assert not sync(hub, tmp_path)["changed"]
    assert stamps.stat().st_mtime_ns == stamped_at  # the client's verification stamped them: nothing re-hashed


def test_client_downloader_removes_what_fails_verification_for_the_next_attempt(http_fallback, tmp_path):
    hub = http_fallback
    victim = manifest_files(sync(hub, tmp_path / "plan", check_mode=True))[shard(9)]
    hub.faults({"kind": "corrupt", "file": shard(9), "times": 1})
    with pytest.raises(hw.WeightsError, match=rf"verify_repo_checksums: 1 file\(s\) .*\({shard(9)}\); they were "
                                              "removed and the next attempt downloads them again"):
        sync(hub, tmp_path, downloader="huggingface_hub")
    assert not blob_path(tmp_path, victim).exists() and not (tmp_path / STORAGE / "refs" / "main").exists()
    hub.control("DELETE", "stats")
    retried = sync(hub, tmp_path, downloader="huggingface_hub")  # what the task's retries do
    assert retried["files_downloaded"] == 1 and {path for path, counters in file_stats(hub).items()
                                                 if counters["get"]} == {shard(9)}
    assert hashlib.sha256(blob_path(tmp_path, victim).read_bytes()).hexdigest() == victim["sha256"]


@pytest.mark.parametrize("stand_in", ["xet"], indirect=True)
def test_client_downloader_hands_xet_backed_files_to_hf_xet(hub, tmp_path):
    """With hf_xet enabled the client gets a Xet token and asks the CAS, which the stand-in does not reproduce."""
    with pytest.raises(hw.WeightsError, match="huggingface_hub could not download .*501 Not Implemented"):
        sync(hub, tmp_path, downloader="huggingface_hub")
    assert hub.stats()["api"]["xet_read_token"] == 1


# The module ---------------------------------------------------------------------------------------------------


def run_module(check_mode=False, **args):
    """Run hf_model_snapshot.main() in this process; returns (failed, result)."""
    return module_runner.run_module("hf_model_snapshot", args, check_mode)


def module_args(hub: HubProcess, home: pathlib.Path, **overrides) -> dict:
    return {"repo_id": REPO_ID, "revision": "stable", "hf_home": str(home), "endpoint": hub.url, "token": TOKEN,
            "max_workers": 4, "retry_delay": 0.01, "progress_interval": 0.2, **overrides}


def test_module_plans_in_check_mode_then_downloads_then_is_idempotent(hub, tmp_path):
    failed, plan = run_module(check_mode=True, **module_args(hub, tmp_path))
    assert not failed and plan["changed"] and plan["commit"] == hub.info["pinned_commit"]
    assert plan["files_downloaded"] == 176 and plan["bytes_downloaded"] == plan["bytes_total"]
    assert not tmp_path.joinpath("hub").exists()
    progress = tmp_path / "progress" / "progress.json"
    failed, done = run_module(**module_args(hub, tmp_path, progress_file=str(progress)))
    assert not failed and done["changed"] and done["bytes_downloaded"] == plan["bytes_total"]
    assert done["manifest"] == plan["manifest"] and json.loads(progress.read_text())["phase"] == "done"
    failed, again = run_module(**module_args(hub, tmp_path, progress_file=str(progress)))
    assert not failed and not again["changed"] and again["bytes_downloaded"] == 0


def test_module_downloads_with_the_client_from_the_hub_only(http_fallback, seed, tmp_path):
    failed, done = run_module(**module_args(http_fallback, tmp_path, downloader="huggingface_hub"))
    assert not failed and done["changed"] and done["files_downloaded"] == 176
    failed, refused = run_module(**module_args(http_fallback, tmp_path / "copy", downloader="huggingface_hub",
                                               source="path", source_path=seed[1]["snapshot_path"]))
    assert failed and "huggingface_hub downloads from the hub only" in refused["msg"]


def test_module_copies_with_a_given_manifest_and_reports_hub_errors(hub, seed, tmp_path):
    manifest_file = tmp_path / "manifest.json"
    manifest_file.write_text(json.dumps(seed[1]["manifest"]))
    failed, copied = run_module(**module_args(hub, tmp_path / "copy", revision="main", endpoint="http://127.0.0.1:9",
                                              source="path", source_path=seed[1]["snapshot_path"],
                                              manifest_file=str(manifest_file)))
    assert not failed and copied["commit"] == seed[1]["commit"] and copied["source"] == "path"
    failed, result = run_module(**module_args(hub, tmp_path / "bad", revision="no-such-branch"))
    assert failed and "model_weights_revision" in result["msg"]
    failed, result = run_module(**module_args(hub, tmp_path, source="http"))
    assert failed and "source_url" in result["msg"]


# The wait_for_job action --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("progress", "stale", "line"), [
    (None, 0, "node1: job running, no progress reported yet"),
    ({"phase": "resolving", "repo_id": REPO_ID, "revision": "main"}, 0, f"node1: resolving {REPO_ID}@main"),
    ({"phase": "downloading", "bytes_done": 123_400_000_000, "bytes_total": 689_000_000_000,
      "rate_bytes_per_second": 1_213_000_000, "eta_seconds": 467, "files_done": 31, "files_total": 172}, 0,
     "node1: 123.4 GB of 689.0 GB (17.9 %), 1.21 GB/s, ETA 7 min 47 s, 31/172 files"),
    ({"phase": "downloading", "bytes_done": 5_300_000, "bytes_total": 11_100_000, "rate_bytes_per_second": 845_200,
      "eta_seconds": None, "files_done": 70, "files_total": 176}, 0,
     "node1: 5.3 MB of 11.1 MB (47.7 %), 845 kB/s, ETA unknown, 70/176 files"),
    ({"phase": "downloading", "bytes_done": 0, "bytes_total": 689_000_000_000, "rate_bytes_per_second": 12_500_000,
      "eta_seconds": 55_120, "files_done": 0, "files_total": 172}, 0,
     "node1: 0 B of 689.0 GB (0.0 %), 12.5 MB/s, ETA 15 h 18 min, 0/172 files"),
    ({"phase": "verifying", "bytes_done": 2_000_000_000, "bytes_total": 689_000_000_000, "files_done": 1,
      "files_total": 172}, 0, "node1: verifying what is on disk, 2.0 GB of 689.0 GB (0.3 %) in place, 1/172 files"),
    ({"phase": "downloading", "bytes_done": 1, "bytes_total": 2, "rate_bytes_per_second": 0, "eta_seconds": 200_000,
      "files_done": 0, "files_total": 1}, 300,
     "node1: 1 B of 2 B (50.0 %), 0.00 B/s, ETA 2 d 07 h, 0/1 files (no progress update for 5 min 0 s)"),
    ({"phase": "failed", "message": "not enough disk space"}, 0, "node1: failed: not enough disk space"),
    ({"phase": "starting", "message": "vllm: loading the weights (74/163 shards), 3 min 10 s since the wait began"},
     0, "node1: vllm: loading the weights (74/163 shards), 3 min 10 s since the wait began"),
    ({"phase": "done", "bytes_done": 689_000_000_000, "bytes_total": 689_000_000_000, "files_done": 172,
      "files_total": 172}, 0, "node1: done, 689.0 GB of 689.0 GB (100.0 %), 172/172 files"),
], ids=["none", "resolving", "guide-example", "small", "hours", "verifying", "stale", "failed", "starting",
        "done"])
def test_progress_lines(progress, stale, line):
    assert wait_for_job.format_progress("node1", progress, stale) == line


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def run_action(statuses: list[dict], progress: list[dict | None], monkeypatch, check_mode=False, **args):
    """Run the action with a fake node: successive async_status answers and progress documents."""
    clock, lines, calls = FakeClock(), [], []
    monkeypatch.setattr(wait_for_job, "time", clock)
    monkeypatch.setattr(wait_for_job.display, "display", lines.append)
    task = mock.MagicMock(async_val=0, check_mode=check_mode, args={"jid": "j1.2", **args})
    connection = mock.MagicMock()
    connection._shell.tmpdir = None
    action = wait_for_job.ActionModule(task, connection, mock.MagicMock(), None, None)

    def execute_module(module_name, module_args, task_vars):
        calls.append((module_name, dict(module_args)))
        if module_name == "ansible.legacy.slurp":
            document = progress.pop(0) if len(progress) > 1 else progress[0]
            if document is None:
                return {"failed": True, "msg": "file not found"}
            return {"content": base64.b64encode(json.dumps(document).encode()).decode(), "encoding": "base64"}
        if module_args["mode"] == "cleanup":
            return {"erased": "x"}
        return {"_ansible_parsed": True, **(statuses.pop(0) if len(statuses) > 1 else statuses[0])}

    monkeypatch.setattr(action, "_execute_module", execute_module)
    monkeypatch.setattr(action, "_remote_expand_user", lambda path: "/root/.ansible_async")
    monkeypatch.setattr(action, "_remove_tmp_path", lambda path: None)
    result = action.run(task_vars={"inventory_hostname": "node1"})
    return result, lines, calls


def downloading(done: int, updated: float) -> dict:
    return {"phase": "downloading", "bytes_done": done, "bytes_total": 100 * 10 ** 9, "rate_bytes_per_second": 10 ** 9,
            "eta_seconds": 100 - done // 10 ** 9, "files_done": done // 10 ** 9, "files_total": 100,
            "updated_at": updated}


def test_action_prints_a_line_per_interval_and_returns_the_jobs_result(monkeypatch):
    running = {"started": True, "finished": False, "ansible_job_id": "j1.2"}
    final = {"started": 1, "finished": True, "ansible_job_id": "j1.2", "changed": True, "commit": "c" * 40,
             "invocation": {"module_args": {}}, "results_file": "/root/.ansible_async/j1.2"}
    done = {**downloading(100 * 10 ** 9, 9), "phase": "done"}
    result, lines, calls = run_action(
        [running] * 7 + [final], [None, downloading(30 * 10 ** 9, 1), downloading(60 * 10 ** 9, 2), done],
        monkeypatch, progress_file="/var/lib/model-weights/progress.json", interval=20)
    assert lines == [
        "node1: job running, no progress reported yet",
        "node1: 30.0 GB of 100.0 GB (30.0 %), 1.00 GB/s, ETA 1 min 10 s, 30/100 files",
        "node1: 60.0 GB of 100.0 GB (60.0 %), 1.00 GB/s, ETA 40 s, 60/100 files",
        "node1: done, 100.0 GB of 100.0 GB (100.0 %), 100/100 files",
    ]
    assert result["changed"] and result["commit"] == "c" * 40 and result["ansible_job_id"] == "j1.2"
    assert not {"started", "finished", "invocation", "results_file"} & set(result)
    assert calls[-1] == ("ansible.legacy.async_status",
                         {"jid": "j1.2", "mode": "cleanup", "_async_dir": "/root/.ansible_async"})


def test_action_returns_a_failed_job_and_gives_up_at_the_timeout(monkeypatch):
    failed_job = {"finished": True, "failed": True, "msg": "not enough disk space", "ansible_job_id": "j1.2"}
    result, lines, calls = run_action([failed_job], [None], monkeypatch, progress_file="/p.json")
    assert result["failed"] and result["msg"] == "not enough disk space" and lines == []
    assert calls[-1][1]["mode"] == "cleanup"

    running = {"started": True, "finished": False}
    result, lines, calls = run_action([running], [downloading(10 ** 9, 5)], monkeypatch, progress_file="/p.json",
                                      interval=30, timeout=100)
    assert result["failed"] and "did not finish within 100 s" in result["msg"] and not result["finished"]
    assert lines[-1].endswith("(no progress update for 1 min 0 s)")
    assert all(module_args.get("mode") != "cleanup" for _, module_args in calls)

    result, lines, calls = run_action([running] * 4 + [{"finished": True, "changed": False}], [downloading(1, 1)],
                                      monkeypatch, check_mode=True, progress_file="/p.json", interval=10)
    assert not result["changed"] and lines == ["node1: job running, no progress reported yet"] * 3
    assert all(name != "ansible.legacy.slurp" for name, _ in calls)
