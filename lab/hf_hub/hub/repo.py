"""The repository: its files (git and LFS, with the metadata the hub reports), commits and branches, generated
from a seed by `build_repo`."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from .files import README, README_CHANGELOG, small_files
from .shards import DEFAULT_SHARD_BYTES, MIN_SHARD_BYTES, ShardBody, build_shards, sha256_of, shard_name

REPO_ID = "deepseek-ai/DeepSeek-V3.2"
DEFAULT_SEED = "deepseek-v3.2-standin"
# How the hub stores LFS files: Git LFS behind a CDN, or Xet (the hub's default for new uploads).
STORAGES = ("lfs", "xet")
COMMIT_DATES = ("2025-12-01T09:32:41.000Z", "2025-12-08T11:05:19.000Z")
CREATED_AT = "2025-12-01T03:27:45.000Z"


def git_blob_oid(data: bytes) -> str:
    """The git object id of a blob, which the hub reports as `oid`/`blobId` and as ETag of git files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The Git LFS pointer text that git stores in place of an LFS file."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


class HubFile:
    """One file of one commit, with the metadata the hub reports for it.

    Git files carry `content`. LFS shards carry a `shard` body whose sha256 is computed on first use (so large
    `--shard-bytes` values cost nothing until a shard is asked for), or, in the real-size profile, only a fixed
    stand-in digest and no bytes at all.
    """

    def __init__(self, path: str, size: int, *, content: bytes | None = None, shard: ShardBody | None = None,
                 sha256: str | None = None) -> None:
        self.path, self.size, self.content, self.shard = path, size, content, shard
        self._sha256 = sha256
        self._git_oid = git_blob_oid(content) if content is not None else None

    @property
    def is_lfs(self) -> bool:
        return self.content is None

    @property
    def servable(self) -> bool:
        """False for real-size shards: only their metadata exists."""
        return self.content is not None or self.shard is not None

    @property
    def lfs_sha256(self) -> str | None:
        if self._sha256 is None and self.shard is not None:
            # Deterministic, so two threads racing here compute the same value.
            self._sha256 = sha256_of(self.shard)
        return self._sha256

    @property
    def git_oid(self) -> str:
        """Blob oid of the file, or of its LFS pointer for LFS files (what the hub reports as oid/blobId)."""
        if self._git_oid is None:
            self._git_oid = git_blob_oid(lfs_pointer(self.lfs_sha256, self.size))
        return self._git_oid

    @property
    def xet_hash(self) -> str:
        """The file's Xet hash (64 hex). Xet's is a Merkle hash over content-defined chunks, which the stand-in does
        not cut: a hash derived from the sha256 stands in for it."""
        return hashlib.sha256(f"xet-standin:{self.lfs_sha256}".encode()).hexdigest()

    @property
    def pointer_size(self) -> int | None:
        return len(lfs_pointer(self.lfs_sha256, self.size)) if self.is_lfs else None

    def read(self, offset: int, length: int) -> bytes:
        if self.content is not None:
            return self.content[offset:offset + length]
        if self.shard is not None:
            return self.shard.read(offset, length)
        raise ValueError(f"{self.path}: content is not available in this size profile")


@dataclass
class Commit:
    sha: str
    title: str
    date: str
    files: dict[str, HubFile]
    tree_oids: dict[str, str] = field(default_factory=dict)  # sub-directory path -> git tree oid


@dataclass
class Repo:
    repo_id: str
    seed: str
    size_profile: str
    storage: str
    commits: dict[str, Commit]
    branches: dict[str, str]
    pinned_commit: str
    safetensors_parameters: dict[str, int]

    def used_storage(self) -> int:
        """Bytes of all distinct blobs over all commits (the hub's `usedStorage`)."""
        blobs = {id(f.shard) if f.shard else f.lfs_sha256 if f.is_lfs else f.git_oid: f.size
                 for commit in self.commits.values() for f in commit.files.values()}
        return sum(blobs.values())


# --------------------------------------------------------------------------------------------------------------
# Git objects


def _tree_oids(files: dict[str, HubFile]) -> dict[str, str]:
    """Git tree oid of every sub-directory (they hold only git files), computed like git does."""
    children: dict[str, dict[str, tuple[str, str]]] = {}  # dir -> name -> (mode, blob oid, "" for trees)
    for path, hub_file in files.items():
        parts = path.split("/")
        for depth in range(1, len(parts)):
            directory = "/".join(parts[:depth])
            children.setdefault(directory, {})
            if depth > 1:
                children["/".join(parts[:depth - 1])][parts[depth - 1]] = ("40000", "")
        if len(parts) > 1:
            children["/".join(parts[:-1])][parts[-1]] = ("100644", hub_file.git_oid)

    oids: dict[str, str] = {}

    def tree_oid(directory: str) -> str:
        body = b""
        entries = children[directory]
        for name in sorted(entries, key=lambda n: n + "/" if entries[n][0] == "40000" else n):
            mode, oid = entries[name]
            if mode == "40000":
                oid = tree_oid(f"{directory}/{name}")
            body += f"{mode} {name}".encode() + b"\0" + bytes.fromhex(oid)
        oids[directory] = hashlib.sha1(b"tree %d\0" % len(body) + body).hexdigest()
        return oids[directory]

    for directory in children:
        if directory not in oids:
            tree_oid(directory)
    return oids


def _commit(seed_material: str, files: dict[str, HubFile], title: str, date: str, parent: str | None) -> Commit:
    # An opaque, deterministic 40-hex id: a true git commit hash would need every shard's sha256 at start-up.
    sha = hashlib.sha1(f"{seed_material}|{title}|{date}|{parent}".encode()).hexdigest()
    return Commit(sha=sha, title=title, date=date, files=dict(sorted(files.items())), tree_oids=_tree_oids(files))


def build_repo(
    *,
    seed: str = DEFAULT_SEED,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    size_profile: str = "small",
    storage: str = "lfs",
    extra_commit: bool = False,
    branches: tuple[str, ...] = ("main",),
) -> Repo:
    """Generate the repository.

    `size_profile="small"` serves shards of about `shard_bytes`; `"real"` reports the real shard sizes and
    serves no shard content. `storage="xet"` makes every LFS file Xet-backed. `branches` all point at the pinned commit; with `extra_commit` a later commit
    (README.md edited) exists and `main` points at it, as when the branch moved after a revision was pinned.
    """
    if size_profile not in ("small", "real"):
        raise ValueError(f"unknown size profile {size_profile!r}")
    if storage not in STORAGES:
        raise ValueError(f"unknown storage {storage!r}")
    if size_profile == "small" and shard_bytes < MIN_SHARD_BYTES:
        raise ValueError(f"shard size must be at least {MIN_SHARD_BYTES} bytes")
    bodies, weight_map = build_shards(seed, shard_bytes, size_profile)

    files: dict[str, HubFile] = {}
    for index, body in enumerate(bodies, start=1):
        name = shard_name(index)
        if size_profile == "real":
            # No bytes exist to hash: a stable stand-in digest keeps ETags and metadata consistent.
            digest = hashlib.sha256(f"{seed}:real:{name}:{body.size}".encode()).hexdigest()
            files[name] = HubFile(name, body.size, sha256=digest)
        else:
            files[name] = HubFile(name, body.size, shard=body)
    index = {"metadata": {"total_size": sum(body.data_size for body in bodies)}, "weight_map": weight_map}
    for path, content in small_files(index).items():
        files[path] = HubFile(path, len(content), content=content)

    seed_material = f"{seed}|{size_profile}|{shard_bytes}"
    first = _commit(seed_material, files, "Upload DeepSeek-V3.2", COMMIT_DATES[0], parent=None)
    commits = {first.sha: first}
    branch_map = {name: first.sha for name in dict.fromkeys(("main",) + tuple(branches))}
    if extra_commit:
        readme = (README + README_CHANGELOG).encode()
        later_files = {**files, "README.md": HubFile("README.md", len(readme), content=readme)}
        later = _commit(seed_material, later_files, "Update README.md", COMMIT_DATES[1], parent=first.sha)
        commits[later.sha] = later
        branch_map["main"] = later.sha
    return Repo(
        repo_id=REPO_ID,
        seed=seed,
        size_profile=size_profile,
        storage=storage,
        commits=commits,
        branches=branch_map,
        pinned_commit=first.sha,
        safetensors_parameters={"BF16": 3_918_786_560, "F8_E4M3": 680_571_043_840, "F32": 41_555_600},
    )
