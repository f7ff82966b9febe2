"""Fleet fan-out of a model snapshot: every node of the fleet downloads a share of the blobs from the hub and copies
the others from the nodes that already verified them, while the fleet is still downloading.

Used by hf_model_snapshot with `source: fanout` (the model_weights role's `model_weights_source: fanout`). All nodes
of the play run their download at once, with the same manifest (the controller's plan), the same ordered list of
peers (one base URL per node, the node itself included) and each its own index in that list.

- **What a node serves.** Its peer server (nginx, see the role's `model-weights-peer` unit) serves the cache's
  `blobs/` directory read-only: `GET /blobs/<etag>` (Range, sendfile), `GET /blobs/` (nginx's JSON autoindex: what
  the node holds) and `GET /progress.json` (its downloader's progress document). A blob enters `blobs/` only once
  it is verified (hf_weights renames `<etag>.incomplete` after the hash matched) and the server serves no other
  names; a copy is verified again on arrival anyway (sha256, or the git blob id of small files).
- **Who brings a blob into the fleet** (`assign_owners`): its owner, a node that already holds it if there is one,
  else the nodes in turn over the manifest's order. The owner fetches it from the hub, nobody else does: the
  Internet carries the model once per fleet.
- **A swarm, pipelined.** Every other node copies the blob as soon as any node lists it, from the holder it is
  copying least from at the moment (at random among equals): the first copies come from the owner, later ones
  spread over every node that has it, so the load spreads over all NICs (no fixed tree to repair when a node
  dies). Each node fetches its own share from the hub with `ceil(max_workers / N)` workers (the fleet together
  about as many hub connections as one node alone) and copies with the rest, taking first, in manifest order,
  the blobs it can copy from its least busy holder.
- **Resume and replacement.** A copy that breaks (the peer died, reset the connection, stalled past the timeout)
  goes on from its offset with a Range request to another node that lists the blob; the failed peer is avoided
  for a while.
- **The hub as the fallback.** A blob that no node lists yet is waited for while its owner is alive: its progress
  document changes (the downloader rewrites it every few seconds while it runs). Once the owner has been silent
  for `peer_wait` seconds, or failed, or finished without the blob, the next node of the blob's chain (owner + 1,
  owner + 2, ... modulo N) fetches it from the hub, and the others wait for that one: with a node lost, each
  blob still crosses the Internet about once. A copy that fails verification is fetched again from the hub.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import random
import re
import threading
import time
import urllib.parse

from ansible.module_utils.hf_weights import (
    READ_CHUNK,
    Hub,
    Manifest,
    ManifestFile,
    SnapshotSync,
    TransientError,
    WeightsError,
)

BLOB_NAME = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
LISTING_PATH = "/blobs/"
PROGRESS_PATH = "/progress.json"
# A peer whose copy broke or that refused a connection is not asked again for this many poll intervals (its
# listing, polled meanwhile, tells whether it still serves).
SUSPECT_POLLS = 10
# Poll requests (listing, progress) wait at most this long: a peer that does not answer in time counts as silent.
POLL_TIMEOUT = 5.0
# A peer's progress document is asked for at most this often (it changes every few seconds), or ten times per
# peer_wait if that is more often; its listing at every poll.
PROGRESS_POLL_SECONDS = 1.0
LISTING_MAX_BYTES = 16 * 1024 * 1024
# Progress phases after which a downloader fetches nothing more.
FINAL_PHASES = ("done", "failed")


def unique_blobs(manifest: Manifest) -> list[ManifestFile]:
    """One entry per blob (paths may share one), in the manifest's order: the fleet's common order."""
    seen: dict[str, ManifestFile] = {}
    for item in manifest.files:
        seen.setdefault(item.etag, item)
    return list(seen.values())


def assign_owners(manifest: Manifest, nodes: int, held: list[dict] | None = None) -> dict[str, int]:
    """The node (index into the peer list) that brings each blob (by etag) into the fleet.

    `held`, one dict per node (file name in its `blobs/` directory: size), says what the nodes hold already: a blob
    of the right size on some node is owned by one of its holders (taken in turn), which needs no Internet for it.
    Every other blob goes to the nodes in turn, in the manifest's order, so that each node's share is spread over
    the whole model and the shares complete together.
    """
    if nodes < 1:
        raise WeightsError("the fan-out needs at least one node")
    held = list(held or [])
    owners, turn = {}, 0
    for position, item in enumerate(unique_blobs(manifest)):
        holders = [index for index, blobs in enumerate(held[:nodes]) if (blobs or {}).get(item.etag) == item.size]
        if holders:
            owners[item.etag] = holders[position % len(holders)]
        else:
            owners[item.etag] = turn % nodes
            turn += 1
    return owners


class _Peer:
    """Another node's peer server, and what its polls told: the blobs it lists, whether its downloader is alive."""

    def __init__(self, index: int, url: str, now: float) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise WeightsError(f"peer {index}: {url!r} is not an http://host:port/ URL")
        self.index, self.url = index, url.rstrip("/") + "/"
        self.host, self.port, self.prefix = parts.hostname, parts.port or 80, parts.path.rstrip("/")
        self.blobs: frozenset[str] = frozenset()
        self.signature: tuple | None = None  # of its last progress document
        self.changed_at = now  # when its progress document last changed (the start of the copies counts as one)
        self.seen_change = False  # whether it changed while we watched: its phase is this run's, not a past one's
        self.phase: str | None = None
        self.suspect_until = 0.0
        self.copying = 0  # copies this node is making from it right now
        self.progress_polled_at = float("-inf")
        self._poll_connection: http.client.HTTPConnection | None = None  # kept alive between polls

    def request(self, path: str, headers: dict, timeout: float):
        """GET `path`: (connection, response); the caller closes both."""
        connection = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            connection.request("GET", self.prefix + path, headers={"Accept-Encoding": "identity", **headers})
            return connection, connection.getresponse()
        except BaseException:
            connection.close()
            raise

    def get_json(self, path: str, timeout: float):
        """A small JSON document (None when the server answers 404), on a connection kept for the next poll; a
        connection the server closed meanwhile is opened again once."""
        for attempt in (1, 2):
            if self._poll_connection is None:
                self._poll_connection = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
            try:
                self._poll_connection.request("GET", self.prefix + path, headers={"Accept-Encoding": "identity"})
                response = self._poll_connection.getresponse()
                if int(response.getheader("Content-Length") or 0) > LISTING_MAX_BYTES:
                    raise http.client.HTTPException(f"{path} is larger than {LISTING_MAX_BYTES} bytes")
                body = response.read()
            except (OSError, http.client.HTTPException):
                self.close()
                if attempt == 2:
                    raise
                continue
            if response.status == 404:
                return None
            if response.status != 200:
                raise http.client.HTTPException(f"HTTP {response.status}")
            return json.loads(body)
        return None

    def close(self) -> None:
        if self._poll_connection is not None:
            self._poll_connection.close()
            self._poll_connection = None


class Fanout:
    """The source of bytes of one node of the fan-out (hf_weights' `source` protocol: `name`, `open`)."""

    name = "fanout"

    def __init__(self, hub: Hub, peers: list[str], index: int, *, owners: dict[str, int] | None = None,
                 peer_wait: float = 120.0, poll_interval: float = 1.0, timeout: float = 60.0, clock=time.monotonic):
        if not peers or not 0 <= index < len(peers):
            raise WeightsError(f"peer_index must point into peers (0 to {len(peers) - 1}), got {index}")
        if len(set(peers)) != len(peers):
            raise WeightsError("peers lists a URL twice: one URL per node")
        if peer_wait <= 0 or poll_interval <= 0:
            raise WeightsError("peer_wait and peer_poll_interval must be positive")
        self.hub, self.index, self.given_owners = hub, index, dict(owners or {})
        self.peer_wait, self.poll_interval, self.timeout, self.clock = peer_wait, poll_interval, timeout, clock
        now = clock()
        self.peers = [_Peer(position, url, now) for position, url in enumerate(peers)]
        self.others = [peer for peer in self.peers if peer.index != index]
        self.commit: str | None = None
        self.owners: dict[str, int] = {}
        self.order: dict[str, int] = {}
        self.abort = threading.Event()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._own: list[ManifestFile] = []  # this node's share, fetched from the hub
        self._copies: list[ManifestFile] = []  # copied from peers (or the hub, after the wait)
        self._to_hub: set[str] = set()  # blobs that failed verification: fetched again from the hub
        self.bytes_from_hub = 0
        self.bytes_from_peer = {peer.url: 0 for peer in self.others}
        self.hub_fallbacks: set[str] = set()
        self.rejected: dict[str, str] = {}  # path: the source whose bytes failed verification
        self._last_source: dict[str, str] = {}  # etag: where its last attempt read from

    # -- set-up --------------------------------------------------------------------------------------------------

    def plan(self, manifest: Manifest) -> None:
        """Owners and the common order of the manifest's blobs."""
        self.commit = manifest.commit
        blobs = unique_blobs(manifest)
        default = assign_owners(manifest, len(self.peers))
        self.order = {item.etag: position for position, item in enumerate(blobs)}
        for item in blobs:
            owner = self.given_owners.get(item.etag, default[item.etag])
            if isinstance(owner, str) and owner.isdigit():
                owner = int(owner)
            if not isinstance(owner, int) or not 0 <= owner < len(self.peers):
                raise WeightsError(f"owners gives {item.path} to node {owner!r}, not an index into peers")
            self.owners[item.etag] = owner

    def start(self, blobs: list[ManifestFile], abort: threading.Event) -> None:
        """Queue the blobs to fetch and start watching the other nodes (one thread each)."""
        self.abort = abort
        ordered = sorted(blobs, key=lambda item: self.order.get(item.etag, len(self.order)))
        self._own = [item for item in ordered if self.owners.get(item.etag, self.index) == self.index]
        self._copies = [item for item in ordered if self.owners.get(item.etag, self.index) != self.index]
        if not self._copies:
            return  # nothing to copy: no need to watch anyone
        now = self.clock()
        with self._cond:
            for peer in self.others:  # the wait counts from here, not from before this node checked its own disk
                peer.changed_at = now
        for peer in self.others:
            thread = threading.Thread(target=self._watch, args=(peer,), name=f"fanout-peer-{peer.index}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=POLL_TIMEOUT + 1)

    # -- watching the peers --------------------------------------------------------------------------------------

    def _watch(self, peer: _Peer) -> None:
        try:
            while not self._stop.is_set():
                self.poll(peer)
                if self._stop.wait(self.poll_interval * random.uniform(0.75, 1.25)):
                    return
        finally:
            peer.close()

    def poll(self, peer: _Peer) -> None:
        """Ask a peer what it lists and how its downloader is doing."""
        timeout = min(self.timeout, POLL_TIMEOUT)
        try:
            listing = peer.get_json(LISTING_PATH, timeout)
            names = frozenset(entry.get("name") for entry in listing or []
                              if isinstance(entry, dict) and entry.get("type") == "file"
                              and BLOB_NAME.match(str(entry.get("name"))))
        except (OSError, ValueError, http.client.HTTPException):
            names = frozenset()  # silent or broken: it serves nothing
        progress = None  # not asked this time, or no answer: no sign of life
        if self.clock() - peer.progress_polled_at >= self.progress_poll_interval:
            peer.progress_polled_at = self.clock()
            with contextlib.suppress(OSError, ValueError, http.client.HTTPException):
                progress = peer.get_json(PROGRESS_PATH, timeout)
        now = self.clock()
        with self._cond:
            peer.blobs = names
            # Another commit's document is another run's (one holding the cache's lock): not a sign of this one.
            if isinstance(progress, dict) and progress and progress.get("commit") in (None, self.commit):
                signature = tuple(progress.get(key) for key in ("pid", "started_at", "updated_at", "phase",
                                                                 "bytes_done"))
                if peer.signature is not None and signature != peer.signature:
                    peer.changed_at, peer.seen_change = now, True
                peer.signature, peer.phase = signature, progress.get("phase")
            self._cond.notify_all()

    @property
    def progress_poll_interval(self) -> float:
        return max(self.poll_interval, min(PROGRESS_POLL_SECONDS, self.peer_wait / 10))

    def _gone(self, peer: _Peer, now: float) -> bool:
        """The peer's downloader fetches nothing more: silent for peer_wait, or finished or failed in this run."""
        return now - peer.changed_at > self.peer_wait or (peer.seen_change and peer.phase in FINAL_PHASES)

    def _hub_turn(self, item: ManifestFile, now: float) -> bool:
        """Whether this node fetches a blob that no peer lists from the hub: every node before it in the blob's
        chain (owner, owner + 1, ...) is gone."""
        count, owner = len(self.peers), self.owners[item.etag]
        for step in range(count):
            position = (owner + step) % count
            if position == self.index:
                return True
            if not self._gone(self.peers[position], now):
                return False
        return True

    def _holders(self, item: ManifestFile, now: float) -> list[_Peer]:
        return [peer for peer in self.others if item.etag in peer.blobs and peer.suspect_until <= now]

    def _suspect(self, peer: _Peer) -> None:
        with self._cond:
            peer.suspect_until = self.clock() + SUSPECT_POLLS * self.poll_interval

    # -- scheduling (FanoutSync's workers) ----------------------------------------------------------------------

    @property
    def copies_pending(self) -> int:
        with self._cond:
            return len(self._copies)

    def next_own(self) -> ManifestFile | None:
        with self._cond:
            return self._own.pop(0) if self._own and not self.abort.is_set() else None

    def next_copy(self) -> ManifestFile | None:
        """The first blob to copy that a peer lists (or that is this node's to fetch from the hub after the wait);
        waits while none is; None when none is left."""
        with self._cond:
            while self._copies and not self.abort.is_set():
                now = self.clock()
                ready = self._least_busy(now) or next((item for item in self._copies if self._hub_turn(item, now)),
                                                      None)
                if ready is not None:
                    self._copies.remove(ready)
                    return ready
                self._cond.wait(self.poll_interval)
            return None

    def _least_busy(self, now: float) -> ManifestFile | None:
        """The first blob (in order) among those some peer lists whose least busy holder (in copies this node
        makes from it) is the least busy of all: this node's copies spread over the peers' uplinks."""
        best, best_load = None, None
        for item in self._copies:
            holders = self._holders(item, now)
            if holders:
                load = min(peer.copying for peer in holders)
                if best_load is None or load < best_load:
                    best, best_load = item, load
                    if load == 0:
                        break
        return best

    # -- bytes ---------------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def open(self, item: ManifestFile, offset: int):
        """Stream `item` from `offset`: from the hub (this node's share, after the wait, after a failed
        verification) or from a peer that lists it; waits while neither is due."""
        while True:
            peer = self._choose(item)
            if peer is None:
                self._last_source[item.etag] = "hub"
                with self.hub.open(item, offset) as (start, chunks):
                    yield start, self._counted(chunks, None, item)
                return
            try:
                connection, response = peer.request(f"{LISTING_PATH}{item.etag}",
                                                    {"Range": f"bytes={offset}-"} if offset else {}, self.timeout)
            except (OSError, http.client.HTTPException):
                self._suspect(peer)
                continue
            try:
                if response.status == 404:  # gone since its listing (e.g. removed after a failed re-verification)
                    with self._cond:
                        peer.blobs = peer.blobs - {item.etag}
                    continue
                if response.status not in (200, 206):
                    self._suspect(peer)
                    continue
                start = self._range_start(response, offset, item)
                self._last_source[item.etag] = peer.url
                with self._cond:
                    peer.copying += 1
                try:
                    yield start, self._counted(self._peer_chunks(peer, response, item, start), peer, item)
                finally:
                    with self._cond:
                        peer.copying -= 1
                return
            finally:
                response.close()
                connection.close()

    def _choose(self, item: ManifestFile) -> _Peer | None:
        """A peer that lists the blob, picked at random; None for the hub. Waits while neither is due."""
        with self._cond:
            if self.owners.get(item.etag, self.index) == self.index or item.etag in self._to_hub:
                return None
            while True:
                if self.abort.is_set():
                    # The caller's back-off sees the abort and stops at once.
                    raise TransientError(f"{item.path}: stopped, another file failed")
                now = self.clock()
                holders = self._holders(item, now)
                if holders:
                    least = min(peer.copying for peer in holders)
                    return random.choice([peer for peer in holders if peer.copying == least])
                if self._hub_turn(item, now):
                    self.hub_fallbacks.add(item.path)
                    return None
                self._cond.wait(self.poll_interval)

    @staticmethod
    def _range_start(response, offset: int, item: ManifestFile) -> int:
        if response.status == 200:
            return 0  # the whole file: hf_weights skips what it has
        match = re.match(r"bytes (\d+)-", response.getheader("Content-Range") or "")
        if not match or int(match.group(1)) != offset:
            raise TransientError(f"{item.path}: asked for bytes {offset}- and got "
                                 f"{response.getheader('Content-Range')!r}", restart=True)
        return offset

    def _peer_chunks(self, peer: _Peer, response, item: ManifestFile, start: int):
        """The body; a peer that breaks it off is suspected, and the caller resumes elsewhere."""
        position = start
        try:
            while position < item.size:
                chunk = response.read(min(READ_CHUNK, item.size - position))
                if not chunk:
                    break
                position += len(chunk)
                yield chunk
        except (OSError, http.client.HTTPException) as error:
            self._suspect(peer)
            raise TransientError(f"{item.path} from {peer.url}: {error!r}") from error
        if position < item.size:
            self._suspect(peer)
            raise TransientError(f"{item.path}: {peer.url} ended the body at byte {position} of {item.size}")

    def _counted(self, chunks, peer: _Peer | None, item: ManifestFile):
        for chunk in chunks:
            with self._cond:
                if peer is None:
                    self.bytes_from_hub += len(chunk)
                else:
                    self.bytes_from_peer[peer.url] += len(chunk)
            yield chunk

    def reject(self, item: ManifestFile) -> None:
        """The bytes just fetched for `item` failed verification: its next attempt reads from the hub."""
        with self._cond:
            self.rejected[item.path] = self._last_source.get(item.etag, "?")
            self._to_hub.add(item.etag)

    def report(self) -> dict:
        with self._cond:
            return {
                "node": self.index,
                "nodes": len(self.peers),
                "blobs_owned": sum(1 for owner in self.owners.values() if owner == self.index),
                "bytes_from_hub": self.bytes_from_hub,
                "bytes_from_peers": sum(self.bytes_from_peer.values()),
                "bytes_by_peer": dict(self.bytes_from_peer),
                "hub_fallbacks": sorted(self.hub_fallbacks),
                "rejected": dict(sorted(self.rejected.items())),
            }


class FanoutSync(SnapshotSync):
    """SnapshotSync with the fan-out's scheduling: this node's share from the hub with `ceil(max_workers / N)`
    workers, the copies with the rest; a worker whose share is done helps with the copies."""

    def __init__(self, hf_home: str, repo_id: str, revision: str, *, source: Fanout, **options) -> None:
        if options.get("hub") is None:
            raise WeightsError("the fan-out needs the hub (its share, and the fallback)")
        super().__init__(hf_home, repo_id, revision, source=source, **options)

    def run(self, manifest: Manifest | None = None) -> dict:
        if manifest is None:
            raise WeightsError("the fan-out needs the manifest (every node must fetch the same commit)")
        self.source.plan(manifest)
        result = super().run(manifest)
        if not self.check_mode:
            result["fanout"] = self.source.report()
        return result

    def _fetch_all(self, plan) -> None:
        source: Fanout = self.source
        source.start([blob.item for blob in plan.to_fetch], self.abort)
        blobs = {blob.item.etag: blob for blob in plan.to_fetch}
        workers = max(1, self.settings.max_workers)
        own = min(workers, math.ceil(workers / len(source.peers)))
        roles = ["own"] * own + ["copy"] * max(workers - own, 1 if source.copies_pending else 0)

        def worker(role: str, plan) -> None:
            while True:
                item = source.next_own() if role == "own" else None
                if item is None:
                    item = source.next_copy()
                if item is None:
                    return
                self._fetch_blob(blobs[item.etag], plan)

        try:
            # One task per worker (not per blob): _in_parallel's first-failure handling applies as it is.
            self._in_parallel(worker, roles, plan)
        finally:
            source.stop()

    def _rejected(self, item: ManifestFile) -> None:
        self.source.reject(item)
