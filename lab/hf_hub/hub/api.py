"""The hub's routes: model info, tree, paths-info, refs, the Xet token route and resolve (HEAD metadata, redirects
to the CDN or the bridge), with the repository, revision, token and gate checks and the rate-limit buckets."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from urllib.parse import parse_qs, quote, unquote, urlencode

from .files import BOS, CONFIG, EOS, PAD
from .repo import CREATED_AT, Commit
from .responses import HubError
from .storage import SIGNED_URL_LIFETIME, StorageRoutes

_API_SUBPATHS = {"revision", "tree", "paths-info", "refs", "xet-read-token"}


class HubRoutes(StorageRoutes):
    """The hub listener's routes (resolve hands file bytes and redirects over to the storage routes)."""

    def _hub(self, method: str, url_path: str, query: dict, body: bytes) -> None:
        segments = url_path.strip("/").split("/")
        self._rate_limit(segments)
        token_state = self._token_state()
        if segments[0] == "api" and len(segments) >= 3 and segments[1] in ("models", "datasets", "spaces", "kernels"):
            repo_segments = segments[2:]
            split = 2 if len(repo_segments) >= 2 and repo_segments[1] not in _API_SUBPATHS else 1
            repo_id, rest = "/".join(repo_segments[:split]), repo_segments[split:]
            self._check_repo(segments[1] == "models", repo_id, token_state)
            if rest[:1] == ["xet-read-token"]:  # a token to read the files: gated like them
                self._check_gate(token_state)
            self._api(method, rest, query, body)
            return
        if "resolve" in segments[1:4] and method in ("GET", "HEAD"):
            at = segments.index("resolve")
            repo_segments = segments[:at]
            is_model = repo_segments[0] not in ("datasets", "spaces", "kernels")
            self._check_repo(is_model, "/".join(repo_segments if is_model else repo_segments[1:]), token_state)
            self._check_gate(token_state)
            if len(segments) < at + 3:
                raise HubError(404, None, "Sorry, we can't find the page you are looking for.")
            self._resolve(method, unquote(segments[at + 1]), unquote("/".join(segments[at + 2:])))
            return
        raise HubError(404, None, "Sorry, we can't find the page you are looking for.")

    def _rate_limit(self, segments: list[str]) -> None:
        """Count the request in its bucket; over the limit, the hub answers 429 with Retry-After."""
        bucket = "api" if segments[0] == "api" else "resolvers" if "resolve" in segments[1:4] else None
        if bucket is None:
            return
        allowed, self._rate_limit_headers = self.hub.rate_limits.take(bucket)
        if not allowed:
            limits = self.hub.rate_limits
            raise HubError(429, None, f"Too Many Requests: you have reached the '{bucket}' rate limit of "
                                      f"{limits.limits[bucket]} requests per {limits.window:g} s; retry after "
                                      f"{self._rate_limit_headers['Retry-After']} s")

    def _token_state(self) -> str:
        """anonymous, granted, no_access (valid token without access to the gated repo); invalid raises 401."""
        header = self.headers.get("Authorization")
        if not header:
            return "anonymous"
        token = header.removeprefix("Bearer ").strip()
        if token in self.hub.tokens:
            return "granted"
        if token in self.hub.tokens_without_access:
            return "no_access"
        raise HubError(401, None, "Invalid credentials in Authorization header")

    def _check_repo(self, is_model: bool, repo_id: str, token_state: str) -> None:
        if not is_model or repo_id != self.hub.repo.repo_id:
            # The hub answers 401 to anonymous requests for missing (or private) repos, 404 to authenticated ones.
            raise HubError(401 if token_state == "anonymous" else 404, "RepoNotFound", "Repository not found")

    def _check_gate(self, token_state: str) -> None:
        repo_id = self.hub.repo.repo_id
        if not self.hub.gated or token_state == "granted":
            return
        if token_state == "anonymous":
            raise HubError(401, "GatedRepo", f"Access to model {repo_id} is restricted. You must have access to it "
                                             "and be authenticated to access it. Please log in.")
        raise HubError(403, "GatedRepo", f"Access to model {repo_id} is restricted and you are not in the "
                                         f"authorized list. Visit https://huggingface.co/{repo_id} to ask for access.")

    def _commit(self, revision: str) -> Commit:
        with self.hub.lock:
            sha = self.hub.repo.branches.get(revision, revision)
        commit = self.hub.repo.commits.get(sha)
        if commit is None:
            raise HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return commit

    def _api(self, method: str, rest: list[str], query: dict, body: bytes) -> None:
        if method == "GET" and not rest:
            self._model_info(self._commit("main"), query)
        elif method == "GET" and len(rest) == 2 and rest[0] == "revision":
            self._model_info(self._commit(unquote(rest[1])), query)
        elif method == "GET" and len(rest) >= 2 and rest[0] == "tree":
            self._tree(self._commit(unquote(rest[1])), rest[1], unquote("/".join(rest[2:])), query)
        elif method == "POST" and len(rest) == 2 and rest[0] == "paths-info":
            self._paths_info(self._commit(unquote(rest[1])), body)
        elif method == "GET" and len(rest) == 2 and rest[0] == "xet-read-token":
            self._xet_read_token(self._commit(unquote(rest[1])))
        elif method == "GET" and rest == ["refs"]:
            self.hub.stats.api_call("refs")
            with self.hub.lock:
                branches = [{"name": name, "ref": f"refs/heads/{name}", "targetCommit": sha}
                            for name, sha in self.hub.repo.branches.items()]
            refs = {"branches": branches, "converts": [], "tags": []}
            if query.get("include_prs"):
                refs["pullRequests"] = []
            self._send_json(200, refs)
        else:
            raise HubError(404, None, "Sorry, we can't find the page you are looking for.")

    def _model_info(self, commit: Commit, query: dict) -> None:
        self.hub.stats.api_call("model_info")
        repo = self.hub.repo
        with_blobs = query.get("blobs", ["false"])[0].lower() in ("1", "true")
        siblings = []
        for hub_file in commit.files.values():
            sibling: dict = {"rfilename": hub_file.path}
            if with_blobs:
                sibling.update(size=hub_file.size, blobId=hub_file.git_oid)
                if hub_file.is_lfs:
                    sibling["lfs"] = {"sha256": hub_file.lfs_sha256, "size": hub_file.size,
                                      "pointerSize": hub_file.pointer_size}
            siblings.append(sibling)
        info = {
            "_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24],
            "id": repo.repo_id,
            "modelId": repo.repo_id,
            "author": repo.repo_id.split("/")[0],
            "sha": commit.sha,
            "lastModified": commit.date,
            "createdAt": CREATED_AT,
            "private": False,
            "disabled": False,
            "gated": "manual" if self.hub.gated else False,
            "downloads": 0,
            "likes": 0,
            "library_name": "transformers",
            "pipeline_tag": "text-generation",
            "tags": ["transformers", "safetensors", "deepseek_v32", "text-generation", "conversational",
                     "base_model:deepseek-ai/DeepSeek-V3.2-Exp-Base", "license:mit", "fp8", "region:us"],
            "config": {"architectures": CONFIG["architectures"], "model_type": CONFIG["model_type"],
                       "quantization_config": {"quant_method": "fp8"},
                       "tokenizer_config": {"bos_token": BOS, "eos_token": EOS, "pad_token": PAD}},
            "cardData": {"license": "mit", "library_name": "transformers",
                         "base_model": ["deepseek-ai/DeepSeek-V3.2-Exp-Base"], "pipeline_tag": "text-generation"},
            "transformersInfo": {"auto_model": "AutoModelForCausalLM", "pipeline_tag": "text-generation",
                                 "processor": "AutoTokenizer"},
            "siblings": siblings,
            "spaces": [],
            "safetensors": {"parameters": dict(repo.safetensors_parameters),
                            "total": sum(repo.safetensors_parameters.values())},
            "usedStorage": repo.used_storage(),
        }
        if query.get("securityStatus"):
            info["securityRepoStatus"] = {"scansDone": True, "filesWithIssues": []}
        expand = query.get("expand") or query.get("expand[]")
        if expand:
            info = {key: value for key, value in info.items() if key in {"_id", "id", *expand}}
        self._send_json(200, info)

    def _entry(self, commit: Commit, path: str, expand: bool) -> dict:
        """A tree / paths-info entry for a file or a directory of `commit`."""
        if path in commit.files:
            hub_file = commit.files[path]
            entry: dict = {"type": "file", "oid": hub_file.git_oid, "size": hub_file.size, "path": path}
            if hub_file.is_lfs:
                entry["lfs"] = {"oid": hub_file.lfs_sha256, "size": hub_file.size,
                                "pointerSize": hub_file.pointer_size}
                if self.hub.repo.storage == "xet":
                    entry["xetHash"] = hub_file.xet_hash
        else:
            entry = {"type": "directory", "oid": commit.tree_oids[path], "size": 0, "path": path}
        if expand:
            entry["lastCommit"] = {"id": commit.sha, "title": commit.title, "date": commit.date}
            if entry["type"] == "file":
                entry["securityFileStatus"] = {"status": "safe", "avScan": {"virusFound": False, "virusNames": None},
                                               "pickleImportScan": None}
        return entry

    def _tree(self, commit: Commit, quoted_revision: str, folder: str, query: dict) -> None:
        self.hub.stats.api_call("tree")
        recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
        expand = query.get("expand", ["false"])[0].lower() in ("1", "true")
        if folder and folder not in commit.tree_oids:
            raise HubError(404, "EntryNotFound", f"{folder} does not exist on \"{quoted_revision}\"",
                           {"X-Repo-Commit": commit.sha})
        prefix = f"{folder}/" if folder else ""
        paths = sorted(
            path for path in [*commit.files, *commit.tree_oids]
            if path.startswith(prefix) and (recursive or "/" not in path[len(prefix):])
        )
        if "cursor" in query:
            after = json.loads(base64.urlsafe_b64decode(query["cursor"][0]))["file_name"]
            paths = [path for path in paths if path > after]
        page_size = 50 if expand else self.hub.tree_page_size
        page, more = paths[:page_size], len(paths) > page_size
        headers = {}
        if more:
            cursor = base64.urlsafe_b64encode(json.dumps({"file_name": page[-1]}).encode()).decode()
            folder_part = "/" + quote(folder, safe="") if folder else ""
            params = urlencode({"recursive": str(recursive).lower(), "expand": str(expand).lower(),
                                "cursor": cursor})
            next_url = (f"{self._base_url(self.server.server_address[1])}/api/models/{self.hub.repo.repo_id}"
                        f"/tree/{quoted_revision}{folder_part}?{params}")
            headers["Link"] = f'<{next_url}>; rel="next"'
        self._send_json(200, [self._entry(commit, path, expand) for path in page], headers)

    def _paths_info(self, commit: Commit, body: bytes) -> None:
        self.hub.stats.api_call("paths_info")
        if self.headers.get("Content-Type", "").startswith("application/json"):
            request = json.loads(body or b"{}")
            paths, expand = request.get("paths", []), bool(request.get("expand"))
        else:
            form = parse_qs(body.decode())
            paths, expand = form.get("paths", []), form.get("expand", ["false"])[0].lower() in ("1", "true")
        known = [path.strip("/") for path in paths
                 if path.strip("/") in commit.files or path.strip("/") in commit.tree_oids]
        self._send_json(200, [self._entry(commit, path, expand) for path in dict.fromkeys(known)])

    def _resolve(self, method: str, revision: str, path: str) -> None:
        commit = self._commit(revision)
        hub_file = commit.files.get(path)
        if hub_file is None:
            raise HubError(404, "EntryNotFound", "Entry not found", {"X-Repo-Commit": commit.sha})
        self.hub.stats.file_event(path, "head" if method == "HEAD" else "get")
        common = {"X-Repo-Commit": commit.sha, "Accept-Ranges": "bytes", "Vary": "Origin, Accept-Encoding"}
        if not hub_file.is_lfs:
            self._content(method, hub_file, {**common, "ETag": f'"{hub_file.git_oid}"'})
            return
        # LFS files live on the CDN, Xet-backed ones behind the Xet bridge: the hub answers with a signed redirect
        # carrying the file's metadata.
        self.hub.stats.file_event(path, "redirect")
        name = path.rsplit("/", 1)[-1]
        disposition = f"inline; filename*=UTF-8''{quote(name)}; filename=\"{name}\";"
        headers = {**common, "ETag": f'"{hub_file.lfs_sha256}"', "X-Linked-Etag": f'"{hub_file.lfs_sha256}"',
                   "X-Linked-Size": hub_file.size}
        if self.hub.repo.storage == "xet":
            headers["Location"] = self._bridge_location(hub_file, disposition)
            # What huggingface_hub's parse_xet_file_data_from_response reads: the hash, and the token route.
            headers["X-Xet-Hash"] = hub_file.xet_hash
            token_url = f"{self._base_url(self.server.server_address[1])}/api/models/{self.hub.repo.repo_id}" \
                        f"/xet-read-token/{commit.sha}"
            headers["Link"] = (f'<{token_url}>; rel="xet-auth", <{self._base_url(self.hub.bridge_port)}'
                               f'/v1/reconstructions/{hub_file.xet_hash}>; rel="xet-reconstruction-info"')
        else:
            self.hub.blobs.setdefault(hub_file.lfs_sha256, hub_file)
            expires = int(time.time()) + SIGNED_URL_LIFETIME
            repo_hash = hashlib.sha256(self.hub.repo.repo_id.encode()).hexdigest()
            cdn_path = f"/repos/{repo_hash[:2]}/{repo_hash[2:4]}/{repo_hash}/{hub_file.lfs_sha256}"
            params = urlencode({"response-content-disposition": disposition, "Expires": expires,
                                "Signature": self.hub.sign(cdn_path, expires)})
            headers["Location"] = f"{self._base_url(self.hub.cdn_port)}{cdn_path}?{params}"
        self._send_bytes(302, f"Found. Redirecting to {headers['Location']}".encode(), "text/plain; charset=utf-8",
                         headers, method=method)
