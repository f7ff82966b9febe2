"""Where file bytes come from: the CDN (LFS files behind signed URLs), the Xet bridge (presigned S3-style URLs) and
its CAS, the Xet read-token endpoint, and the bytes themselves with Range, faults and the throttle."""

from __future__ import annotations

import calendar
import hashlib
import hmac
import mimetypes
import re
import socket
import struct
import time
from urllib.parse import urlencode, urlsplit

from .faults import corrupted
from .repo import Commit, HubFile
from .responses import Answers, HubError

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
CDN_PATH = re.compile(r"/repos/[0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]{64}/(?P<sha256>[0-9a-f]{64})")
# The hub's Xet bridge (cas-bridge.xethub.hf.co) serves a Xet-backed file at /xet-bridge-us/<repo _id>/<Xet hash>
# with an S3-style presigned query.
BRIDGE_PATH = re.compile(r"/xet-bridge-us/[0-9a-f]{24}/(?P<xet_hash>[0-9a-f]{64})")
_CAS_RECONSTRUCTION_PATH = re.compile(r"/v[12]/reconstructions/(?P<xet_hash>[0-9a-f]{64})")
SIGNED_URL_LIFETIME = 3600
_XET_TOKEN_LIFETIME = 3600
_ACCESS_DENIED = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>'
                  b"<Message>Access denied</Message></Error>")
_UNSATISFIABLE = (-1, -1)


def _parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, end-exclusive) of a single byte range, None to send the whole file, or _UNSATISFIABLE."""
    match = _RANGE.fullmatch(header.strip()) if header else None
    if match is None or match.groups() == ("", ""):
        return None  # absent, multi-range or malformed: servers may ignore Range and send everything
    first, last = match.groups()
    if first == "":
        length = int(last)
        return (max(0, size - length), size) if length > 0 and size > 0 else _UNSATISFIABLE
    start = int(first)
    end = size if last == "" else min(int(last) + 1, size)
    return (start, end) if start < size and start < end else _UNSATISFIABLE


class StorageRoutes(Answers):
    """The CDN's and the bridge's routes, and what the hub's routes hand over to them."""

    def _xet_read_token(self, commit: Commit) -> None:
        """A short-lived token for Xet storage: huggingface_hub reads the X-Xet-* headers, other clients the
        JSON body; hf_xet then asks the CAS (`casUrl`) how to rebuild each file."""
        self.hub.stats.api_call("xet_read_token")
        expires = int(time.time()) + _XET_TOKEN_LIFETIME
        token = "xet_" + self.hub.sign(f"xet-read|{commit.sha}", expires)[:48]
        cas_url = self._base_url(self.hub.bridge_port)
        self._send_json(200, {"casUrl": cas_url, "exp": expires, "accessToken": token},
                        {"X-Xet-Cas-Url": cas_url, "X-Xet-Access-Token": token, "X-Xet-Token-Expiration": expires})

    def _bridge_location(self, hub_file: HubFile, disposition: str) -> str:
        """A presigned bridge URL in the S3 style of the hub's (X-Amz-Date and X-Amz-Expires bound its lifetime)."""
        self.hub.xet_blobs.setdefault(hub_file.xet_hash, hub_file)
        repo_object_id = hashlib.sha1(self.hub.repo.repo_id.encode()).hexdigest()[:24]  # the model info's _id
        bridge_path = f"/xet-bridge-us/{repo_object_id}/{hub_file.xet_hash}"
        signed_at = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        params = urlencode({
            "X-Amz-Algorithm": "AWS4-HMAC-SHA256", "X-Amz-Date": signed_at, "X-Amz-Expires": SIGNED_URL_LIFETIME,
            "X-Amz-SignedHeaders": "host", "X-Amz-Signature": self.hub.sign(bridge_path, signed_at),
            "X-Xet-Cas-Uid": "public", "response-content-disposition": disposition, "x-id": "GetObject"})
        return f"{self._base_url(self.hub.bridge_port)}{bridge_path}?{params}"

    # -- cdn -----------------------------------------------------------------------------------------------

    def _cdn(self, method: str, url_path: str, query: dict) -> None:
        match = CDN_PATH.fullmatch(url_path)
        hub_file = self.hub.blobs.get(match["sha256"]) if match else None
        expires = query.get("Expires", ["0"])[0]
        signature = query.get("Signature", [""])[0]
        valid = (hub_file is not None and expires.isdigit() and int(expires) > time.time()
                 and hmac.compare_digest(signature, self.hub.sign(url_path, int(expires))))
        if method not in ("GET", "HEAD") or not valid:
            self._send_bytes(403, _ACCESS_DENIED, "text/xml", method=method)
            return
        self._count_storage_request(method, hub_file)
        disposition = query.get("response-content-disposition", [None])[0]
        headers = {"ETag": f'"{hub_file.lfs_sha256}"', "Accept-Ranges": "bytes",
                   "Last-Modified": "Mon, 01 Dec 2025 09:32:41 GMT", "X-Cache": "Miss from cloudfront"}
        if disposition:
            headers["Content-Disposition"] = disposition
        self._content(method, hub_file, headers)

    def _count_storage_request(self, method: str, hub_file: HubFile) -> None:
        """Count a request of the CDN or the bridge, and whether it carried the hub token (it must not)."""
        self.hub.stats.file_event(hub_file.path, "head" if method == "HEAD" else "get")
        if self.headers.get("Authorization"):
            self.hub.stats.file_event(hub_file.path, "with_token")

    # -- Xet bridge and CAS ------------------------------------------------------------------------------

    def _bridge(self, method: str, url_path: str, query: dict) -> None:
        reconstruction = _CAS_RECONSTRUCTION_PATH.fullmatch(url_path)
        if reconstruction:
            self.hub.stats.api_call("xet_reconstruction")
            raise HubError(501, None, "hf_hub stand-in: the Xet CAS protocol (file reconstruction) is not "
                                      "reproduced; download with HF_HUB_DISABLE_XET=1, the client's HTTP path "
                                      "through the bridge")
        match = BRIDGE_PATH.fullmatch(url_path)
        hub_file = self.hub.xet_blobs.get(match["xet_hash"]) if match else None
        signed_at = query.get("X-Amz-Date", [""])[0]
        try:
            expires = calendar.timegm(time.strptime(signed_at, "%Y%m%dT%H%M%SZ")) \
                + int(query.get("X-Amz-Expires", ["0"])[0])
        except ValueError:
            expires = 0
        valid = (hub_file is not None and expires > time.time() and hmac.compare_digest(
            query.get("X-Amz-Signature", [""])[0], self.hub.sign(url_path, signed_at)))
        if method not in ("GET", "HEAD") or not valid:
            self._send_bytes(403, _ACCESS_DENIED, "text/xml", method=method)
            return
        self._count_storage_request(method, hub_file)
        headers = {"ETag": f'"{hub_file.xet_hash}"', "Accept-Ranges": "bytes",
                   "Last-Modified": "Mon, 01 Dec 2025 09:32:41 GMT"}
        disposition = query.get("response-content-disposition", [None])[0]
        if disposition:
            headers["Content-Disposition"] = disposition
        self._content(method, hub_file, headers)

    # -- file bytes ----------------------------------------------------------------------------------------

    def _content(self, method: str, hub_file: HubFile, headers: dict) -> None:
        """Send a file or a byte range of it, applying drop/stall/corrupt faults and the throttle."""
        size = hub_file.size
        byte_range = _parse_range(self.headers.get("Range"), size)
        if byte_range == _UNSATISFIABLE:
            self._send_bytes(416, b"", "text/plain", {**headers, "Content-Range": f"bytes */{size}"}, method)
            return
        start, end = byte_range or (0, size)
        if method == "GET" and not hub_file.servable:
            raise HubError(501, None, "hf_hub stand-in: size profile 'real' serves metadata only; "
                                      f"the content of {hub_file.path} is not available")
        content_type = mimetypes.guess_type(hub_file.path)[0] or "application/octet-stream"
        headers = {**headers, "Content-Type": content_type, "Content-Length": end - start}
        if byte_range:
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        if method == "HEAD":
            self._send_headers(206 if byte_range else 200, headers)
            return
        if byte_range:
            self.hub.stats.file_event(hub_file.path, "range_get")
        url_path = urlsplit(self.path).path
        drop = self.hub.faults.take("drop", method, url_path, hub_file.path)
        stall = self.hub.faults.take("stall", method, url_path, hub_file.path)
        corrupt = self.hub.faults.take("corrupt", method, url_path, hub_file.path)
        self._send_headers(206 if byte_range else 200, headers)
        self._stream(hub_file, start, end, drop=drop, stall=stall, corrupt=corrupt is not None)

    def _stream(self, hub_file: HubFile, start: int, end: int, *, drop: dict | None, stall: dict | None,
                corrupt: bool) -> None:
        hub, sent, total = self.hub, 0, end - start
        drop_at = drop["after_bytes"] if drop else None
        stall_at = stall["after_bytes"] if stall else None
        while sent < total:
            if stall_at is not None and sent >= stall_at:
                stall_at = None
                if hub.stopping.wait(stall["seconds"]):
                    return
            if drop_at is not None and sent >= drop_at:
                self._cut_connection(drop["mode"])
                hub.stats.file_event(hub_file.path, "bodies_cut")
                return
            count = min(hub.throttle.chunk_size(), total - sent)
            for boundary in (drop_at, stall_at):
                if boundary is not None and sent < boundary < sent + count:
                    count = boundary - sent
            data = hub_file.read(start + sent, count)
            if corrupt:
                data = corrupted(data, start + sent)
            delay = hub.throttle.delay_for(count)
            if delay and hub.stopping.wait(delay):
                return
            self.wfile.write(data)
            sent += count
            self._body_bytes += count
            hub.stats.file_event(hub_file.path, "bytes_sent", count)
        hub.stats.file_event(hub_file.path, "bodies_completed")

    def _cut_connection(self, mode: str) -> None:
        """End the response early: `close` sends FIN (truncated body), `reset` sends RST."""
        self.close_connection = True
        if mode == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.rfile.close()  # the socket only really closes once its file objects are gone
            self.connection.close()
        else:
            self.connection.shutdown(socket.SHUT_RDWR)
