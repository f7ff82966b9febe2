"""Resumable, verified, parallel download of a Hugging Face model snapshot into the hub cache layout.

Every hub interaction goes through the public API of the `huggingface_hub` client (2.4.0): model info, file URLs,
the metadata HEAD (`get_hf_file_metadata`) that stops at the hub's redirect, the token and user-agent headers, and
its exceptions; the cache's writer lock is the client's `WeakFileLock`. What the client does not do is ours:

- resume across runs: a partial file has a stable name, `blobs/<sha256 or git oid>.incomplete`, and is continued
  with a Range request after the bytes already on disk are hashed (the client writes each attempt to a randomly
  named temp file that it deletes on failure, and that a killed run leaves behind);
- hashing while streaming: every blob is verified (sha256 for LFS files, git blob sha1 for the others: the rule
  of the client's `HfApi.verify_repo_checksums`, which applies it only to whole files on disk) before it is
  renamed into `blobs/`, without reading it again;
- verified-file stamps (size, mtime, inode), so a re-run does not re-hash hundreds of gigabytes;
- retries of every step with exponential backoff and jitter, bounded by attempts and time without progress;
- peers and paths as sources of bytes (fleet mode), verified against the same manifest, without the hub;
- a progress file.

Xet-backed files (the hub's `X-Xet-Hash`) take the path the client itself takes without hf_xet: the bytes of the
location the hub redirects to (the Xet bridge, as the CDN for Git LFS files), read with Range requests. hf_xet
would rebuild a file from content-addressed chunks into a temp file that does not survive a failed run, and
verify nothing against the sha256. The bytes are read with the standard library's http.client, which costs a
fraction of the CPU per byte of the client's HTTP stack.

The result is the client's cache layout as its cache guide documents it (`<hf_home>/hub/models--org--name/`
with `blobs/`, `snapshots/<commit>/` links and `refs/<branch>`, written last; the client's own writers of that
layout are private), so `HF_HUB_OFFLINE=1` clients (vLLM) find the snapshot. `SnapshotSync` can also leave the
transfer to the client (`downloader="huggingface_hub"`: `snapshot_download`, then its `verify_repo_checksums`),
for sites that prefer hf_xet.

Only the standard library is imported at module level, so that the model_weights filter runs on a controller
without huggingface_hub; the client is imported where it is used (the hub, and the cache's file lock).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import errno
import glob
import hashlib
import http.client
import json
import os
import random
import re
import shutil
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

# The client release this code is tested with (public API only).
TESTED_HUGGINGFACE_HUB = "2.4.0"
MANIFEST_FORMAT = 1
STAMP_FORMAT = 1
# Stamps are saved at most this often during a run (and at its end): a killed run re-hashes at most the blobs
# verified in its last seconds.
STAMP_SAVE_SECONDS = 2.0
READ_CHUNK = 8 * 1024 * 1024
RATE_WINDOW_SECONDS = 30.0
# The real client's temp files: `<etag>.<8 hex>.incomplete`. Ours have no random part.
CLIENT_TEMP_FILE = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})\.[0-9a-f]{8}\.incomplete$")
# A client temp file this old is an orphan of a killed run, not a download in progress.
CLIENT_TEMP_MIN_AGE_SECONDS = 300
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
VERIFY_MODES = ("stamp", "full")
DOWNLOADERS = ("resumable", "huggingface_hub")


# --------------------------------------------------------------------------------------------------------------
# Errors


class WeightsError(Exception):
    """A failure to report to the operator as is; the message says what to fix."""


class DiskFullError(WeightsError):
    """The cache's filesystem cannot hold what is still missing."""


class TransientError(Exception):
    """A failure worth retrying: 5xx, 429, timeouts, connection resets, truncated bodies."""

    def __init__(self, message: str, retry_after: float | None = None, restart: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.restart = restart  # the partial file cannot be continued: start the file again from byte 0


class _VerificationFailed(Exception):
    """The bytes do not hash to the manifest's value: the file is fetched again from byte 0, once."""


class _Aborted(Exception):
    """Another worker failed: stop at the next chunk and keep the partial file."""


# --------------------------------------------------------------------------------------------------------------
# Manifest: what a revision holds


@dataclasses.dataclass(frozen=True)
class ManifestFile:
    """One file of a revision: LFS files have a sha256, every file has its git blob id."""

    path: str
    size: int
    blob_id: str
    sha256: str | None = None

    @property
    def etag(self) -> str:
        """The blob's name in the cache, as the client names it (the ETag the hub sends for the file)."""
        return self.sha256 or self.blob_id

    def new_hasher(self):
        if self.sha256:
            return hashlib.sha256()
        hasher = hashlib.sha1()  # git blob id: sha1 of "blob <size>\0" + content
        hasher.update(b"blob %d\0" % self.size)
        return hasher


@dataclasses.dataclass(frozen=True)
class Manifest:
    repo_id: str
    revision: str
    commit: str
    files: tuple[ManifestFile, ...]

    @property
    def bytes_total(self) -> int:
        return sum(item.size for item in self.files)

    @property
    def resolved_from_branch(self) -> bool:
        return self.revision != self.commit

    def to_dict(self) -> dict:
        return {"format": MANIFEST_FORMAT, "repo_id": self.repo_id, "revision": self.revision, "commit": self.commit,
                "files": [dataclasses.asdict(item) for item in self.files]}

    @classmethod
    def from_dict(cls, data: dict) -> Manifest:
        """Validate a manifest received as data (from another host): hashes, sizes and safe relative paths."""
        _require(isinstance(data, dict) and data.get("format") == MANIFEST_FORMAT,
                 f"the manifest is not a format {MANIFEST_FORMAT} manifest from hf_model_snapshot")
        commit = data.get("commit")
        _require(_is_hex(commit, 40), f"the manifest's commit must be 40 hex characters, got {commit!r}")
        files = []
        for entry in data.get("files") or []:
            _require(isinstance(entry, dict), f"the manifest's files must be objects, got {entry!r}")
            path, size, blob_id, sha256 = (entry.get(key) for key in ("path", "size", "blob_id", "sha256"))
            _require(_is_safe_relative_path(path), f"the manifest holds an unsafe path: {path!r}")
            _require(isinstance(size, int) and not isinstance(size, bool) and size >= 0,
                     f"the manifest's size of {path} is not a byte count: {size!r}")
            _require(_is_hex(blob_id, 40), f"the manifest's blob_id of {path} is not a git object id: {blob_id!r}")
            _require(sha256 is None or _is_hex(sha256, 64),
                     f"the manifest's sha256 of {path} is not a sha256: {sha256!r}")
            files.append(ManifestFile(path=path, size=size, blob_id=blob_id, sha256=sha256))
        repo_id, revision = data.get("repo_id"), data.get("revision")
        _require(isinstance(repo_id, str) and repo_id.count("/") == 1 and isinstance(revision, str) and bool(files),
                 "the manifest needs repo_id (org/name), revision and a list of files")
        return cls(repo_id=repo_id, revision=revision, commit=commit, files=tuple(files))


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise WeightsError(message)


def _is_hex(value: object, length: int) -> bool:
    return isinstance(value, str) and re.fullmatch(f"[0-9a-f]{{{length}}}", value) is not None


def _is_safe_relative_path(path: object) -> bool:
    """Relative, no `.` or `..` or empty segment (so neither empty nor absolute), no backslash or NUL."""
    return isinstance(path, str) and "\\" not in path and "\0" not in path and \
        all(part not in ("", ".", "..") for part in path.split("/"))


def load_manifest_file(path: str) -> Manifest:
    try:
        with open(path, encoding="utf-8") as handle:
            return Manifest.from_dict(json.load(handle))
    except (OSError, ValueError) as error:
        raise WeightsError(f"cannot read the manifest file {path}: {error}") from error


# --------------------------------------------------------------------------------------------------------------
# Settings and retries


@dataclasses.dataclass(frozen=True)
class TransferSettings:
    max_workers: int = 8
    timeout: float = 60.0  # connect and each read, seconds
    retries: int = 10  # further attempts of a file after failures without progress
    retry_delay: float = 1.0  # first backoff, doubled after each failure
    retry_max_delay: float = 60.0
    retry_max_time: float = 1800.0  # seconds a file may keep failing without progress
    progress_interval: float = 5.0
    lock_timeout: float = 86400.0


class Backoff:
    """Retry bookkeeping of one operation: attempts and time since the last progress, exponential delays with
    jitter (between half and all of the doubled delay), at least what a Retry-After header asks for."""

    def __init__(self, settings: TransferSettings, abort: threading.Event, what: str) -> None:
        self.settings, self.abort, self.what = settings, abort, what
        self.failures = 0
        self.since = time.monotonic()

    def progressed(self) -> None:
        self.failures = 0
        self.since = time.monotonic()

    def wait_or_give_up(self, error: TransientError) -> None:
        """Sleep before the next attempt, or raise WeightsError once the bounds are reached."""
        self.failures += 1
        elapsed = time.monotonic() - self.since
        if self.failures > self.settings.retries or elapsed > self.settings.retry_max_time:
            raise WeightsError(f"{self.what}: giving up after {self.failures} failed attempts in {elapsed:.0f} s "
                               f"without progress; last error: {error}")
        delay = min(self.settings.retry_max_delay, self.settings.retry_delay * 2 ** (self.failures - 1))
        delay = random.uniform(delay / 2, delay)
        if error.retry_after is not None:
            delay = max(delay, min(error.retry_after, self.settings.retry_max_delay))
        if self.abort.wait(delay):
            raise _Aborted()


# --------------------------------------------------------------------------------------------------------------
# Sources of bytes


class Hub:
    """The hub through the pinned huggingface_hub client: manifest, per-file metadata and the byte stream."""

    name = "hub"

    def __init__(self, repo_id: str, *, endpoint: str | None, token: str | None, settings: TransferSettings) -> None:
        self.repo_id, self.token, self.settings = repo_id, token or None, settings
        self.endpoint = endpoint.rstrip("/") if endpoint else None
        self._opener = _opener(environment_proxies=True)  # as the client: HTTPS_PROXY and friends apply
        self.revision: str | None = None
        self.commit: str | None = None

    @property
    def endpoint_url(self) -> str:
        from huggingface_hub import constants

        return (self.endpoint or constants.ENDPOINT).rstrip("/")

    def manifest(self, revision: str, abort: threading.Event) -> Manifest:
        """Resolve the revision to its commit and list every file with size and hash: one model-info call."""
        from huggingface_hub import HfApi

        api = HfApi(endpoint=self.endpoint, token=self.token)
        self.revision = revision
        info = self._retrying(f"model info of {self.repo_id}@{revision} from {self.endpoint_url}", abort,
                              lambda: api.model_info(self.repo_id, revision=revision, files_metadata=True,
                                                     timeout=self.settings.timeout))
        files = []
        for sibling in info.siblings or []:
            size = sibling.lfs.size if sibling.lfs else sibling.size
            _require(size is not None and sibling.blob_id is not None,
                     f"{self.endpoint_url} sent no sizes or blob ids for {self.repo_id}@{revision} (model info with "
                     "blobs=true): it does not look like a Hugging Face hub endpoint")
            files.append(ManifestFile(path=sibling.rfilename, size=size, blob_id=sibling.blob_id,
                                      sha256=sibling.lfs.sha256 if sibling.lfs else None))
        return Manifest(repo_id=self.repo_id, revision=revision, commit=info.sha, files=tuple(files))

    def _retrying(self, what: str, abort: threading.Event, call, path: str | None = None):
        """`call()` until it succeeds: a client exception is classified, transient ones retried with backoff."""
        backoff = Backoff(self.settings, abort, what)
        while True:
            try:
                return call()
            except Exception as error:  # noqa: BLE001 - classified: transient ones retried, the rest explained
                classified = self.classify(error, path)
                if not isinstance(classified, TransientError):
                    raise classified from error
                backoff.wait_or_give_up(classified)

    def classify(self, error: Exception, path: str | None = None) -> Exception:
        """Map a client exception to TransientError (retry) or WeightsError (explained to the operator)."""
        import httpx2
        from huggingface_hub import errors

        where = f"{self.repo_id}@{self.revision or '?'}"
        if isinstance(error, errors.OfflineModeIsEnabled):
            return WeightsError("HF_HUB_OFFLINE is set in the environment of the download: unset it there, or copy "
                                "from a peer (source http) or a path (source path).")
        if isinstance(error, errors.GatedRepoError):
            who = "no token was given" if not self.token else "the token's account has not been granted access"
            return WeightsError(f"{self.repo_id} is a gated repository and {who}: accept its conditions on "
                                f"{self.endpoint_url}/{self.repo_id} with the token's account and set "
                                "model_weights_hf_token (option token).")
        if isinstance(error, errors.RepositoryNotFoundError):
            return WeightsError(f"repository {self.repo_id} was not found on {self.endpoint_url} (the hub answers "
                                "the same for a private repository the token cannot read): check "
                                "model_weights_repo_id (option repo_id), and model_weights_hf_token for a private "
                                "repository.")
        if isinstance(error, errors.RevisionNotFoundError):
            return WeightsError(f"revision {self.revision!r} does not exist in {self.repo_id}: set "
                                "model_weights_revision (option revision) to a branch, a tag or a 40-character "
                                "commit hash of that repository.")
        if isinstance(error, errors.RemoteEntryNotFoundError):
            return WeightsError(f"{path} is listed in {where} but the hub answers EntryNotFound for it.")
        if isinstance(error, errors.HfHubHTTPError) and error.response is not None:
            status = error.response.status_code
            if status == 401:
                return WeightsError(f"{self.endpoint_url} rejected the token (invalid credentials: mistyped, "
                                    "revoked or expired): fix model_weights_hf_token (option token), or leave it "
                                    "empty for a public repository.")
            if status in (408, 429) or status >= 500:
                return TransientError(f"HTTP {status} from {self.endpoint_url}",
                                      retry_after=_retry_after(error.response.headers))
            return WeightsError(f"{where}{' ' + path if path else ''}: {error}")
        if isinstance(error, (httpx2.TimeoutException, httpx2.NetworkError, httpx2.RemoteProtocolError)):
            return TransientError(f"{type(error).__name__} talking to the hub: {error}")
        raise error

    def _metadata(self, item: ManifestFile):
        """The client's metadata HEAD of one file at the commit: (its URL, the client's HfFileMetadata)."""
        from huggingface_hub import get_hf_file_metadata, hf_hub_url

        url = hf_hub_url(self.repo_id, item.path, revision=self.commit, endpoint=self.endpoint)
        return url, get_hf_file_metadata(url, token=self.token, timeout=self.settings.timeout, endpoint=self.endpoint)

    def check_access(self, item: ManifestFile) -> None:
        """Ask for one file's metadata: a gated repository refuses files, not the model info, so a plan that only
        read the model info would not see that the token cannot download."""
        self._retrying(f"metadata of {item.path} from {self.endpoint_url}", threading.Event(),
                       lambda: self._metadata(item), item.path)

    def open(self, item: ManifestFile, offset: int):
        """Stream `item` from `offset`: a context manager that yields (first offset served, chunk iterator).

        The client's metadata HEAD (a fresh one per attempt, so a fresh signed URL) names the location: the hub
        itself for git files, the CDN for Git LFS files, the Xet bridge for Xet-backed ones (the client would hand
        those to hf_xet). The token goes to the hub's own origin only. The bytes of that location are read with
        http.client: the client's HTTP stack parses bodies in Python under the GIL and costs several times the
        CPU per byte, which caps a download at a few hundred MB/s.
        """
        from huggingface_hub.utils import build_hf_headers

        try:
            url, metadata = self._metadata(item)
        except Exception as error:  # noqa: BLE001 - classified: the caller retries transient ones
            raise self.classify(error, item.path) from error
        if metadata.etag != item.etag or (metadata.size is not None and metadata.size != item.size):
            raise WeightsError(f"{item.path}: the hub describes it as {metadata.etag} ({metadata.size} bytes) at "
                               f"{metadata.commit_hash}, the manifest as {item.etag} ({item.size} bytes) at "
                               f"{self.commit}.")
        signed = _origin(metadata.location) != _origin(url)
        return _http_range(self._opener, metadata.location, build_hf_headers(token=False if signed else self.token),
                           offset, item, self.settings.timeout, signed=signed)


class _SameOriginAuthRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects, but never carry the token to another origin (what the client's session does too)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        follow = super().redirect_request(req, fp, code, msg, headers, newurl)
        if follow is not None and _origin(newurl) != _origin(req.full_url):
            follow.remove_header("Authorization")
        return follow


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or {"http": 80, "https": 443}.get(parts.scheme)


def _opener(environment_proxies: bool) -> urllib.request.OpenerDirector:
    no_proxies = [] if environment_proxies else [urllib.request.ProxyHandler({})]
    return urllib.request.build_opener(_SameOriginAuthRedirects(), *no_proxies)


@contextlib.contextmanager
def _http_range(opener, url: str, headers: dict, offset: int, item: ManifestFile, timeout: float, *,
                signed: bool = False, hint: str = ""):
    """GET `url` from byte `offset`: yields (first offset served, chunks); failures become ours.

    `signed`: the URL is a signed CDN or Xet bridge URL, and a 403 means it expired - the next attempt asks for a
    new one.
    `hint` ends the message of a failure that is not retried.
    """
    request = urllib.request.Request(url, headers={**headers, "Accept-Encoding": "identity",
                                                   **({"Range": f"bytes={offset}-"} if offset else {})})
    where = urllib.parse.urlsplit(url)._replace(query="").geturl()  # no signatures in messages
    try:
        response = opener.open(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        with error:
            reason = error.headers.get("X-Error-Message") or error.reason
            if error.code in (408, 429) or error.code >= 500:
                raise TransientError(f"HTTP {error.code} from {where}",
                                     retry_after=_retry_after(error.headers)) from None
            if error.code == 403 and signed:
                raise TransientError(f"{where} refused the signed URL of {item.path} (HTTP 403); asking the hub "
                                     "for a new one") from None
            if error.code == 416:
                raise TransientError(f"range {offset}- of {item.path} not satisfiable", restart=True) from None
            raise WeightsError(f"{item.path}: HTTP {error.code} from {where}: {reason}{hint}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        raise TransientError(f"cannot fetch {item.path} from {where}: {error}") from error
    with response:
        yield _range_start(response.status, response.headers.get("Content-Range"), offset, item), \
            _file_chunks(response, item.path)


def _retry_after(headers) -> float | None:
    with contextlib.suppress(TypeError, ValueError):  # absent, or a date
        return float(headers.get("Retry-After"))
    return None


def _range_start(status: int, content_range: str | None, offset: int, item: ManifestFile) -> int:
    """File offset of the first byte of a 200/206 body; 0 when the server ignored the Range header."""
    if status != 206:
        return 0
    match = re.match(r"bytes (\d+)-", content_range or "")
    start = int(match.group(1)) if match else -1
    if start != offset:
        raise TransientError(f"{item.path}: asked for bytes {offset}- and got {content_range!r}", restart=True)
    return start


class PeerHttp:
    """A peer serving a snapshot directory over HTTP (`python3 -m http.server`): no token, no proxy."""

    name = "http"

    def __init__(self, base_url: str, settings: TransferSettings) -> None:
        self.base_url = base_url.rstrip("/") + "/"
        self.settings = settings
        self._opener = _opener(environment_proxies=False)

    def open(self, item: ManifestFile, offset: int):
        return _http_range(self._opener, self.base_url + urllib.parse.quote(item.path), {}, offset, item,
                           self.settings.timeout, hint=" - is the peer serving the snapshot directory of the "
                           "manifest's commit?")


class LocalPath:
    """A snapshot directory on a local or network filesystem (e.g. an NFS export filled once)."""

    name = "path"

    def __init__(self, root: str) -> None:
        self.root = root

    @contextlib.contextmanager
    def open(self, item: ManifestFile, offset: int):
        path = os.path.join(self.root, *item.path.split("/"))
        try:
            handle = open(path, "rb")
            handle.seek(offset)
        except (FileNotFoundError, PermissionError, IsADirectoryError) as error:
            raise WeightsError(f"cannot read {path} from source_path: {error}") from error
        except OSError as error:
            raise TransientError(f"cannot read {path}: {error}") from error
        with handle:
            yield offset, _file_chunks(handle, path)


def _file_chunks(stream, where: str):
    """Chunks of a file-like object; read errors (resets, NFS hiccups, truncation) are transient."""
    try:
        yield from iter(lambda: stream.read(READ_CHUNK), b"")
    except (OSError, http.client.HTTPException) as error:
        raise TransientError(f"reading {where}: {error!r}") from error


# --------------------------------------------------------------------------------------------------------------
# The cache layout and its verification stamps


class CacheLayout:
    """`<hf_home>/hub/models--org--name/` as huggingface_hub lays it out."""

    def __init__(self, hf_home: str, repo_id: str) -> None:
        self.hf_home = hf_home
        self.hub_cache = os.path.join(hf_home, "hub")
        self.folder_name = "models--" + repo_id.replace("/", "--")
        self.storage = os.path.join(self.hub_cache, self.folder_name)
        self.blobs = os.path.join(self.storage, "blobs")
        self.stamps = os.path.join(self.storage, ".hf_weights_verified.json")
        self.lock = os.path.join(self.hub_cache, ".locks", self.folder_name, "hf_weights.lock")

    def blob(self, etag: str) -> str:
        return os.path.join(self.blobs, etag)

    def partial(self, etag: str) -> str:
        return os.path.join(self.blobs, etag + ".incomplete")

    def snapshot(self, commit: str) -> str:
        return os.path.join(self.storage, "snapshots", commit)

    def pointer(self, commit: str, path: str) -> str:
        return os.path.join(self.snapshot(commit), *path.split("/"))

    def ref(self, name: str) -> str:
        return os.path.join(self.storage, "refs", *name.split("/"))


class StampBook:
    """Blobs verified earlier, keyed by etag, with the size, mtime and inode they had when hashed."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._dirty, self._saved_at = False, time.monotonic()
        try:
            data = json.loads(_read_text(path) or "{}")
            self._stamps = data["blobs"] if data.get("format") == STAMP_FORMAT else {}
        except (OSError, ValueError, KeyError, AttributeError):
            self._stamps = {}

    @staticmethod
    def _key(stat: os.stat_result) -> dict:
        return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "inode": stat.st_ino}

    def is_valid(self, item: ManifestFile, stat: os.stat_result) -> bool:
        with self._lock:
            stamp = self._stamps.get(item.etag)
        return stamp is not None and stamp.get("hash") == item.etag and \
            {key: stamp.get(key) for key in ("size", "mtime_ns", "inode")} == self._key(stat)

    def record(self, item: ManifestFile, stat: os.stat_result) -> None:
        """Stamp a verified blob; saved every few seconds, so a killed run keeps most of what it verified."""
        with self._lock:
            self._stamps[item.etag] = {**self._key(stat), "hash": item.etag,
                                       "algorithm": "sha256" if item.sha256 else "git-blob-sha1",
                                       "verified_at": int(time.time())}
            self._dirty = True
            if time.monotonic() - self._saved_at >= STAMP_SAVE_SECONDS:
                self._save()

    def forget(self, etag: str) -> None:
        with self._lock:
            self._dirty = self._stamps.pop(etag, None) is not None or self._dirty

    def save(self) -> None:
        with self._lock:
            if self._dirty:
                self._save()

    def _save(self) -> None:
        _replace_file(self.path, json.dumps({"format": STAMP_FORMAT, "blobs": self._stamps}, separators=(",", ":"),
                                            sort_keys=True))  # compact, and the C encoder: fast
        self._dirty, self._saved_at = False, time.monotonic()


def _replace_file(path: str, text: str) -> None:
    """Write a small file through a temp file renamed over it: a reader sees the old file or the new one."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temporary = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(temporary, 0o644)
    os.replace(temporary, path)


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def _size_or_zero(path: str) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


def free_bytes(path: str) -> int:
    """Free bytes on the filesystem of `path`, or of its closest existing parent."""
    while not os.path.exists(path):
        path = os.path.dirname(path) or "/"
    return shutil.disk_usage(path).free


def bytes_needed(manifest: Manifest, hf_home: str) -> int:
    """Disk bytes the snapshot still needs: blobs missing (or of the wrong size) less their partial files.

    Each blob counts once, however many paths point at it. Blobs of the right size count as present: whether
    their bytes are right is for the download's verification to find out.
    """
    blobs = CacheLayout(hf_home, manifest.repo_id).blobs
    try:
        with os.scandir(blobs) as entries:
            sizes = {entry.name: entry.stat().st_size for entry in entries if entry.is_file(follow_symlinks=False)}
    except FileNotFoundError:
        sizes = {}
    return bytes_needed_given(manifest, sizes)


def bytes_needed_given(manifest: Manifest, blob_sizes: dict[str, int]) -> int:
    """`bytes_needed` for a cache whose blobs directory holds these files (name: bytes), e.g. listed on another
    host: blobs of other revisions do not count, partial files (`<etag>.incomplete`) of this one's do."""
    unique = {item.etag: item for item in manifest.files}.values()
    return sum(max(item.size - blob_sizes.get(item.etag + ".incomplete", 0), 0)
               for item in unique if blob_sizes.get(item.etag) != item.size)


def _write_chunk(handle, data: bytes) -> None:
    """Write all of `data` to an unbuffered file: the one place partial files are written.

    Unbuffered, so that what was hashed is what a killed process leaves on disk, and a full disk fails the write
    that did not fit.
    """
    view = memoryview(data)
    while view:
        view = view[handle.write(view):]


# --------------------------------------------------------------------------------------------------------------
# Progress


class Progress:
    """Counters of the run, and a thread that writes them as JSON (atomically) every few seconds.

    Bytes are counted per path, like the manifest's total: a blob that several paths share counts once per path
    when it is in place.
    """

    def __init__(self, path: str | None, interval: float, identity: dict) -> None:
        self.path, self.interval, self.identity = path, interval, dict(identity)
        self._lock = threading.Lock()
        self.phase, self.message = "resolving", ""
        self.files_total = self.files_done = 0
        self.bytes_total = self.bytes_in_place = self.bytes_downloaded = 0
        self.partial: dict[str, int] = {}  # etag -> bytes in its partial file
        self.current: dict[str, tuple[str, int]] = {}  # etag -> (path, size) being transferred
        self.started_at = time.time()
        self._samples: collections.deque = collections.deque()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.path:
            self._write()
            self._thread = threading.Thread(target=self._report, name="hf-weights-progress", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)
            self._write()

    def _report(self) -> None:
        while not self._stop.wait(self.interval):
            self._write()

    def _write(self) -> None:
        with contextlib.suppress(OSError):  # a progress file must never fail the download
            _replace_file(self.path, json.dumps(self.snapshot(), separators=(",", ":"), sort_keys=True))

    def set_phase(self, phase: str, message: str = "") -> None:
        with self._lock:
            self.phase, self.message = phase, message
        if self._thread:
            self._write()

    def set_totals(self, commit: str, files_total: int, bytes_total: int) -> None:
        with self._lock:
            self.identity["commit"] = commit
            self.files_total, self.bytes_total = files_total, bytes_total

    def in_place(self, size: int, paths: int, etag: str | None = None) -> None:
        """A blob is in place: found, or just published (then `etag`: its partial file is gone)."""
        with self._lock:
            self.partial.pop(etag, None)
            self.bytes_in_place += size * paths
            self.files_done += paths

    def at(self, etag: str, offset: int, written: int = 0) -> None:
        """`etag`'s partial file holds `offset` bytes, `written` of them just now."""
        with self._lock:
            self.partial[etag] = offset
            self.bytes_downloaded += written

    def started(self, etag: str, path: str, size: int) -> None:
        with self._lock:
            self.current[etag] = (path, size)

    def stopped(self, etag: str) -> None:
        with self._lock:
            self.current.pop(etag, None)

    def snapshot(self) -> dict:
        now = time.monotonic()
        with self._lock:
            self._samples.append((now, self.bytes_downloaded))
            while len(self._samples) > 2 and now - self._samples[1][0] >= RATE_WINDOW_SECONDS:
                self._samples.popleft()
            first_time, first_bytes = self._samples[0]
            rate = (self.bytes_downloaded - first_bytes) / (now - first_time) if now > first_time else 0.0
            bytes_done = min(self.bytes_in_place + sum(self.partial.values()), self.bytes_total)
            eta = (self.bytes_total - bytes_done) / rate if rate > 0 and self.phase == "downloading" else None
            return {
                **self.identity,
                "phase": self.phase,
                "message": self.message,
                "bytes_total": self.bytes_total,
                "bytes_done": bytes_done,
                "bytes_downloaded_this_run": self.bytes_downloaded,
                "rate_bytes_per_second": round(rate, 1),
                "eta_seconds": None if eta is None else round(eta),
                "files_total": self.files_total,
                "files_done": self.files_done,
                "current": [{"path": path, "size": size, "bytes_done": self.partial.get(etag, 0)}
                            for etag, (path, size) in sorted(self.current.items(), key=lambda kv: kv[1][0])],
                "started_at": round(self.started_at, 3),
                "updated_at": round(time.time(), 3),
                "pid": os.getpid(),
            }


# --------------------------------------------------------------------------------------------------------------
# The run


@dataclasses.dataclass
class _Blob:
    """A unique blob of the manifest and the paths that point at it."""

    item: ManifestFile
    paths: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class _Plan:
    in_place: list[_Blob] = dataclasses.field(default_factory=list)
    to_hash: list[_Blob] = dataclasses.field(default_factory=list)
    to_fetch: list[_Blob] = dataclasses.field(default_factory=list)
    partial_bytes: dict[str, int] = dataclasses.field(default_factory=dict)  # etag -> bytes of its partial file
    orphans: list[str] = dataclasses.field(default_factory=list)

    def fetch(self, blob: _Blob, partial_bytes: int) -> None:
        self.to_fetch.append(blob)
        self.partial_bytes[blob.item.etag] = min(partial_bytes, blob.item.size)


class SnapshotSync:
    """Bring one revision of a repository into an HF cache, from the hub, a peer or a path; with
    `downloader="huggingface_hub"`, from the hub through the client's own download and verification."""

    def __init__(self, hf_home: str, repo_id: str, revision: str, *, source, settings: TransferSettings,
                 verify: str = "stamp", progress_file: str | None = None, check_mode: bool = False,
                 hub: Hub | None = None, downloader: str = "resumable") -> None:
        _require(verify in VERIFY_MODES, f"verify must be one of {VERIFY_MODES}, got {verify!r}")
        _require(downloader == "resumable" or (downloader == "huggingface_hub" and isinstance(source, Hub)),
                 f"downloader must be one of {DOWNLOADERS}, and huggingface_hub downloads from the hub only; got "
                 f"{downloader!r} with source {source.name}")
        self.layout = CacheLayout(hf_home, repo_id)
        self.repo_id, self.revision, self.source, self.settings = repo_id, revision, source, settings
        self.verify, self.check_mode, self.hub, self.downloader = verify, check_mode, hub, downloader
        self.progress = Progress(None if check_mode else progress_file, settings.progress_interval,
                                 {"repo_id": repo_id, "revision": revision, "source": source.name})
        self.abort = threading.Event()
        self.stamps: StampBook | None = None  # read once this run holds the cache's lock
        self._lock = threading.Lock()
        self.refetched: set[str] = set()  # paths whose bytes failed verification and were fetched again
        self.files_downloaded = 0
        self.manifest: Manifest | None = None

    # -- entry point -------------------------------------------------------------------------------------------

    def run(self, manifest: Manifest | None = None) -> dict:
        """Resolve (unless a manifest is given), then plan (check mode) or sync. Raises WeightsError."""
        started = time.monotonic()
        if manifest is not None:
            self._check_given(manifest)  # before anything is written
        if self.check_mode:  # blobs of the right size count as present: no stamps to read
            return self._plan_only(self._resolve(manifest), started)
        with self._locked():
            self.stamps = StampBook(self.layout.stamps)
            self.progress.start()
            try:
                try:
                    sync = self._sync if self.downloader == "resumable" else self._sync_with_client
                    result = sync(self._resolve(manifest), started)
                finally:
                    self.stamps.save()
                self.progress.set_phase("done")
                return result
            except BaseException as error:
                self.progress.set_phase("failed", str(error) if isinstance(error, WeightsError) else repr(error))
                raise
            finally:
                self.progress.stop()

    def _check_given(self, manifest: Manifest) -> None:
        _require(manifest.repo_id == self.repo_id, f"the manifest describes {manifest.repo_id}, not {self.repo_id}")
        _require(self.revision in (manifest.revision, manifest.commit),
                 f"the manifest describes {manifest.repo_id}@{manifest.revision} (commit {manifest.commit}), not "
                 f"revision {self.revision!r}")

    def _resolve(self, manifest: Manifest | None) -> Manifest:
        """The given manifest, or the hub's for the revision; the run's totals come from it."""
        if manifest is None:
            _require(self.hub is not None, "no manifest was given and no hub is configured to ask for one")
            manifest = self.hub.manifest(self.revision, self.abort)
        if self.hub is not None:
            self.hub.revision, self.hub.commit = self.revision, manifest.commit
        self.progress.set_totals(manifest.commit, len(manifest.files), manifest.bytes_total)
        self.manifest = manifest
        return manifest

    @contextlib.contextmanager
    def _locked(self):
        """One writer per repository cache (the client's own file lock, under its `.locks/`): a second run waits
        for the first without touching the progress file (which keeps showing the first run's progress) and reads
        the stamps only once the first is done."""
        from huggingface_hub.utils import WeakFileLock

        os.makedirs(os.path.dirname(self.layout.lock), exist_ok=True)
        with contextlib.ExitStack() as held:
            try:
                held.enter_context(WeakFileLock(self.layout.lock, timeout=self.settings.lock_timeout))
            except TimeoutError:
                raise WeightsError(f"another download has held {self.layout.lock} for more than "
                                   f"{self.settings.lock_timeout:.0f} s; let it finish or stop it") from None
            yield

    # -- planning ----------------------------------------------------------------------------------------------

    def _survey(self, manifest: Manifest) -> _Plan:
        """Sort the blobs: in place (valid stamp; in check mode, right size), to hash, to fetch; find orphans."""
        blobs: dict[str, _Blob] = {}
        for item in manifest.files:
            blobs.setdefault(item.etag, _Blob(item)).paths.append(item.path)
        plan = _Plan()
        for blob in blobs.values():
            etag = blob.item.etag
            try:
                stat = os.stat(self.layout.blob(etag))
            except FileNotFoundError:
                stat = None
            if stat is not None and stat.st_size == blob.item.size:
                trusted = self.check_mode or (self.verify == "stamp" and self.stamps.is_valid(blob.item, stat))
                (plan.in_place if trusted else plan.to_hash).append(blob)
                continue
            if stat is not None:  # the wrong size: certainly not the right bytes
                self.refetched.update(blob.paths)
            plan.fetch(blob, _size_or_zero(self.layout.partial(etag)))
        plan.orphans = self._client_orphans()
        return plan

    def _client_orphans(self) -> list[str]:
        """Temp files that killed huggingface_hub runs left in blobs/ (no later run reuses or removes them)."""
        cutoff = time.time() - CLIENT_TEMP_MIN_AGE_SECONDS
        return [path for path in sorted(glob.glob(os.path.join(glob.escape(self.layout.blobs), "*.incomplete")))
                if CLIENT_TEMP_FILE.match(os.path.basename(path)) and os.stat(path).st_mtime < cutoff]

    def _link_snapshot(self, manifest: Manifest, write: bool) -> bool:
        """Point the snapshot's links at their blobs, then the branch's ref at the commit (last: a reader that
        follows the branch finds a complete snapshot). Whether anything changed (or would, unless `write`)."""
        changed = False
        for item in manifest.files:
            pointer = self.layout.pointer(manifest.commit, item.path)
            target = os.path.relpath(self.layout.blob(item.etag), os.path.dirname(pointer))
            if not os.path.islink(pointer) or os.readlink(pointer) != target:
                changed = True
                if write:
                    os.makedirs(os.path.dirname(pointer), exist_ok=True)
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(pointer)
                    os.symlink(target, pointer)
        ref = self.layout.ref(manifest.revision)
        if manifest.resolved_from_branch and _read_text(ref) != manifest.commit:
            changed = True
            if write:
                _replace_file(ref, manifest.commit)  # no newline, as the client writes it
        return changed

    def _plan_only(self, manifest: Manifest, started: float) -> dict:
        if isinstance(self.source, Hub) and manifest.files:
            self.source.check_access(min(manifest.files, key=lambda item: item.size))
        plan = self._survey(manifest)
        resumable = sum(plan.partial_bytes.values())
        to_fetch_bytes = sum(blob.item.size for blob in plan.to_fetch)
        result = self._result(manifest, started,
                              changed=bool(plan.to_fetch or plan.orphans or self._link_snapshot(manifest, False)),
                              files_downloaded=sum(len(blob.paths) for blob in plan.to_fetch),
                              bytes_downloaded=to_fetch_bytes - resumable, bytes_resumed=resumable,
                              bytes_needed=bytes_needed(manifest, self.layout.hf_home), orphans_removed=plan.orphans)
        result["files_to_download"] = sorted(path for blob in plan.to_fetch for path in blob.paths)
        return result

    # -- the real run ------------------------------------------------------------------------------------------

    def _sync(self, manifest: Manifest, started: float) -> dict:
        self.progress.set_phase("verifying")
        plan = self._survey(manifest)
        for orphan in plan.orphans:
            os.unlink(orphan)
        for etag, offset in plan.partial_bytes.items():
            self.progress.at(etag, offset)
        for blob in plan.in_place:
            self.progress.in_place(blob.item.size, len(blob.paths))
        self._in_parallel(self._verify_blob, plan.to_hash, plan)

        needed = sum(blob.item.size - plan.partial_bytes[blob.item.etag] for blob in plan.to_fetch)
        if plan.to_fetch:
            os.makedirs(self.layout.blobs, exist_ok=True)
            free = free_bytes(self.layout.blobs)
            if needed > free:
                raise self._disk_full(needed, free)
        self.progress.set_phase("downloading")
        plan.to_fetch.sort(key=lambda blob: (-blob.item.size, blob.item.path))  # big first: a short tail
        self._fetch_all(plan)

        linked = self._link_snapshot(manifest, True)
        written = self.progress.bytes_downloaded
        return self._result(manifest, started,
                            changed=bool(plan.to_fetch or plan.orphans or linked),  # every blob fetched is new
                            files_downloaded=self.files_downloaded, bytes_downloaded=written,
                            bytes_resumed=sum(plan.partial_bytes.values()), bytes_needed=needed,
                            orphans_removed=plan.orphans)

    def _sync_with_client(self, manifest: Manifest, started: float) -> dict:
        """huggingface_hub's own download (through hf_xet for Xet-backed files, unless HF_HUB_DISABLE_XET is set),
        then its own verification of every file. A failed or killed run loses the files in flight; a file that
        fails verification is removed so that the next attempt (the task's retries) fetches it again."""
        from huggingface_hub import HfApi, snapshot_download

        orphans = self._client_orphans()
        for orphan in orphans:
            os.unlink(orphan)
        held = {item.etag for item in manifest.files if os.path.lexists(self.layout.blob(item.etag))}
        needed = bytes_needed(manifest, self.layout.hf_home)
        hub, cache = self.hub, self.layout.hub_cache
        try:
            self.progress.set_phase("downloading", "huggingface_hub snapshot_download")
            snapshot_download(self.repo_id, revision=manifest.commit, cache_dir=cache, endpoint=hub.endpoint,
                              token=hub.token, max_workers=self.settings.max_workers)
            self.progress.set_phase("verifying", "huggingface_hub verify_repo_checksums")
            report = HfApi(endpoint=hub.endpoint, token=hub.token).verify_repo_checksums(
                self.repo_id, revision=manifest.commit, cache_dir=cache)
        except Exception as error:  # noqa: BLE001 - reported with what failed; the task's retries try again
            raise WeightsError(f"huggingface_hub could not download {self.repo_id}@{manifest.commit} into {cache}: "
                               f"{type(error).__name__}: {error}") from error
        failed = sorted({mismatch["path"] for mismatch in report.mismatches} | set(report.missing_paths))
        for item in manifest.files:
            if item.path in failed:
                for path in (self.layout.pointer(manifest.commit, item.path), self.layout.blob(item.etag)):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)
            else:  # verified by the client: a later resumable run need not hash it again
                self.stamps.record(item, os.stat(self.layout.blob(item.etag)))
        if failed:
            raise WeightsError(f"huggingface_hub's verify_repo_checksums: {len(failed)} file(s) of "
                               f"{self.repo_id}@{manifest.commit} do not match the hub's checksums or are missing "
                               f"({', '.join(failed[:5])}{', ...' if len(failed) > 5 else ''}); they were removed "
                               "and the next attempt downloads them again.")
        linked = self._link_snapshot(manifest, True)  # the client's links stand; the ref is ours to write
        new = {item.etag: item for item in manifest.files if item.etag not in held}
        return self._result(manifest, started, changed=bool(new or orphans or linked),
                            files_downloaded=sum(1 for item in manifest.files if item.etag in new),
                            bytes_downloaded=sum(item.size for item in new.values()), bytes_resumed=0,
                            bytes_needed=needed, orphans_removed=orphans)

    # Hooks of the fleet fan-out (module_utils/hf_fanout.py, FanoutSync), which schedules its own fetches.

    def _fetch_all(self, plan: _Plan) -> None:
        """Fetch every blob of `plan.to_fetch`."""
        self._in_parallel(self._fetch_blob, plan.to_fetch, plan)

    def _rejected(self, item: ManifestFile) -> None:
        """The bytes just fetched for `item` failed verification; it is fetched once more."""

    def _in_parallel(self, work, blobs: list[_Blob], plan: _Plan) -> None:
        """Run `work(blob, plan)` on a pool; the first failure stops the others (their partial files stay)."""
        with ThreadPoolExecutor(max(1, self.settings.max_workers), thread_name_prefix="hf-weights") as pool:
            done, _ = wait([pool.submit(work, blob, plan) for blob in list(blobs)], return_when=FIRST_EXCEPTION)
            failed = [future.exception() for future in done if future.exception() is not None]
            if failed:  # the others stop at their next chunk (_Aborted), the queued ones never start
                self.abort.set()
                pool.shutdown(cancel_futures=True)
                raise failed[0]

    def _verify_blob(self, blob: _Blob, plan: _Plan) -> None:
        """Hash a blob that has no valid stamp; a mismatch deletes it and queues it for fetching."""
        item, path = blob.item, self.layout.blob(blob.item.etag)
        hasher, stat = item.new_hasher(), os.stat(path)
        self._hash_file(path, hasher)
        if hasher.hexdigest() == item.etag:
            self.stamps.record(item, stat)
            self.progress.in_place(item.size, len(blob.paths))
            return
        self.stamps.forget(item.etag)
        os.unlink(path)
        partial = _size_or_zero(self.layout.partial(item.etag))
        with self._lock:
            self.refetched.update(blob.paths)
            plan.fetch(blob, partial)
        self.progress.at(item.etag, plan.partial_bytes[item.etag])

    def _fetch_blob(self, blob: _Blob, plan: _Plan) -> None:
        """Fetch one blob into its partial file with retries, verify it, rename it into blobs/."""
        if self.abort.is_set():
            raise _Aborted()
        item = blob.item
        partial = self.layout.partial(item.etag)
        backoff = Backoff(self.settings, self.abort, f"{item.path} from {self.source.name}")
        state = {"written": 0}  # with the offset and hasher of the partial file, kept across attempts
        failed_verification = False
        self.progress.started(item.etag, item.path, item.size)
        try:
            while True:
                try:
                    self._transfer(item, partial, state, backoff)
                    break
                except _VerificationFailed as error:
                    if failed_verification:
                        raise WeightsError(f"{item.path} failed verification twice in a row ({error}): "
                                           f"{self.source.name} serves other bytes than the manifest "
                                           "describes.") from None
                    failed_verification = True
                    self._rejected(item)
                    with self._lock:
                        self.refetched.update(blob.paths)
                    self._discard(item, partial, state)
                except TransientError as error:
                    if error.restart:
                        self._discard(item, partial, state)
                    backoff.wait_or_give_up(error)
        finally:
            self.progress.stopped(item.etag)
        if state["written"]:
            with self._lock:
                self.files_downloaded += len(blob.paths)
        self.progress.in_place(item.size, len(blob.paths), item.etag)

    def _discard(self, item: ManifestFile, partial: str, state: dict) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)
        state.pop("offset", None)
        self.progress.at(item.etag, 0)

    def _transfer(self, item: ManifestFile, partial: str, state: dict, backoff: Backoff) -> None:
        """One attempt: continue the partial file from where it stops, hashing what arrives, verify it, publish it."""
        if _size_or_zero(partial) > item.size:
            self._discard(item, partial, state)
        if state.get("offset") != _size_or_zero(partial):  # first attempt, or the file changed: hash what is there
            state["offset"], state["hasher"] = 0, item.new_hasher()
            with contextlib.suppress(FileNotFoundError):  # so that the stream continues the digest
                state["offset"] = self._hash_file(partial, state["hasher"])
        if state["offset"] == item.size:
            open(partial, "ab").close()  # nothing to fetch (an empty file), but a file to publish
        else:
            with self.source.open(item, state["offset"]) as (start, chunks):
                skip = state["offset"] - start  # bytes to drop when the server ignored the Range header
                try:
                    with open(partial, "ab", buffering=0) as handle:
                        for chunk in chunks:  # read errors come as TransientError: an OSError here is the file's
                            if self.abort.is_set():
                                raise _Aborted()
                            if skip:
                                chunk, skip = chunk[skip:], max(skip - len(chunk), 0)
                                if not chunk:
                                    continue
                            if state["offset"] + len(chunk) > item.size:
                                raise _VerificationFailed(f"the source sent more than {item.size} bytes")
                            _write_chunk(handle, chunk)
                            state["hasher"].update(chunk)
                            state["offset"] += len(chunk)
                            state["written"] += len(chunk)
                            self.progress.at(item.etag, state["offset"], len(chunk))
                            backoff.progressed()
                except OSError as error:
                    raise self._write_failed(error, partial) from error
        if state["offset"] < item.size:
            raise TransientError(f"{item.path}: the body ended after {state['offset']} of {item.size} bytes")
        digest = state["hasher"].hexdigest()
        if digest != item.etag:
            raise _VerificationFailed(f"got {digest}, expected {item.etag}")
        self._publish_blob(item, partial)

    def _hash_file(self, path: str, hasher) -> int:
        """Feed a file's bytes to `hasher`, stopping if another worker failed; the bytes read."""
        count = 0
        with open(path, "rb") as handle:
            while chunk := handle.read(READ_CHUNK):
                if self.abort.is_set():
                    raise _Aborted()
                hasher.update(chunk)
                count += len(chunk)
        return count

    def _write_failed(self, error: OSError, partial: str) -> WeightsError:
        if error.errno in DISK_FULL_ERRNOS:
            return self._disk_full(bytes_needed(self.manifest, self.layout.hf_home), free_bytes(self.layout.blobs))
        return WeightsError(f"cannot write {partial}: {error}")

    def _disk_full(self, needed: int, free: int) -> DiskFullError:
        return DiskFullError(
            f"not enough disk space for {self.repo_id} in {self.layout.storage}: the snapshot still needs "
            f"{needed} bytes ({needed / 1e9:.1f} GB) and {free} bytes ({free / 1e9:.1f} GB) are free there. "
            f"Partial files stay in {self.layout.blobs} and the next run continues them. Free space on that "
            "volume or point model_weights_hf_home (option hf_home) at a larger one.")

    def _publish_blob(self, item: ManifestFile, partial: str) -> None:
        """Make the verified partial file durable, rename it into blobs/ and stamp it."""
        with open(partial, "rb") as handle:
            os.fsync(handle.fileno())
        os.chmod(partial, 0o644)
        os.replace(partial, self.layout.blob(item.etag))
        self.stamps.record(item, os.stat(self.layout.blob(item.etag)))

    def _result(self, manifest: Manifest, started: float, **counts) -> dict:
        """The module's return values; `counts`: changed, files_downloaded, bytes_downloaded, bytes_resumed,
        bytes_needed and orphans_removed, which depend on the kind of run."""
        return {
            "repo_id": manifest.repo_id,
            "revision": self.revision,
            "commit": manifest.commit,
            "resolved_from_branch": manifest.resolved_from_branch,
            "snapshot_path": self.layout.snapshot(manifest.commit),
            "source": self.source.name,
            "files_total": len(manifest.files),
            "bytes_total": manifest.bytes_total,
            "files_refetched": sorted(self.refetched),
            "elapsed_seconds": round(time.monotonic() - started, 3),
            "manifest": manifest.to_dict(),
            **counts,
        }
