"""Run real `huggingface_hub` calls in a fresh process and print their outcome as JSON.

Tests use it to drive the client exactly as the product does: configured only through the environment
(HF_ENDPOINT, HF_HUB_CACHE, HF_TOKEN, timeouts), with a cold import each run. Usage:

    python hub_client.py '[{"op": "snapshot", "revision": "main"}, {"op": "model_info", "files_metadata": true}]'

Each operation's keys other than `op` are passed to the client call; the repo defaults to the stand-in's.
Output: one JSON list with, per operation, either {"result": ...} or {"error": {"type", "bases", "status",
"message"}}. Operations after a failed one still run.
"""

import json
import sys

from huggingface_hub import HfApi, get_hf_file_metadata, hf_hub_download, hf_hub_url, snapshot_download

REPO_ID = "deepseek-ai/DeepSeek-V3.2"


def _entry(item) -> dict:
    entry = {"path": item.path, "type": "file" if hasattr(item, "blob_id") else "directory"}
    if entry["type"] == "file":
        entry.update(size=item.size, blob_id=item.blob_id, xet_hash=item.xet_hash,
                     lfs={"sha256": item.lfs.sha256, "size": item.lfs.size} if item.lfs else None)
    return entry


def _run(op: str, repo_id: str, kwargs: dict):
    api = HfApi()
    if op == "snapshot":
        return snapshot_download(repo_id, **kwargs)
    if op == "dry_run":
        return [{"filename": f.filename, "file_size": f.file_size, "will_download": f.will_download}
                for f in snapshot_download(repo_id, dry_run=True, **kwargs)]
    if op == "download":
        return hf_hub_download(repo_id, **kwargs)
    if op == "model_info":
        info = api.model_info(repo_id, **kwargs)
        siblings = [{"rfilename": s.rfilename, "size": s.size, "blob_id": s.blob_id,
                     "lfs": {"sha256": s.lfs.sha256, "size": s.lfs.size} if s.lfs else None}
                    for s in info.siblings or []]
        return {"id": info.id, "sha": info.sha, "gated": info.gated, "siblings": siblings}
    if op == "tree":
        return [_entry(item) for item in api.list_repo_tree(repo_id, **kwargs)]
    if op == "paths_info":
        return [_entry(item) for item in api.get_paths_info(repo_id, **kwargs)]
    if op == "file_metadata":
        metadata = get_hf_file_metadata(hf_hub_url(repo_id, **kwargs))
        xet = metadata.xet_file_data
        return {"commit_hash": metadata.commit_hash, "etag": metadata.etag, "size": metadata.size,
                "location": metadata.location,
                "xet": {"file_hash": xet.file_hash, "refresh_route": xet.refresh_route} if xet else None}
    raise ValueError(f"unknown op {op!r}")


def main() -> None:
    outcomes = []
    for spec in json.loads(sys.argv[1]):
        kwargs = dict(spec)
        op, repo_id = kwargs.pop("op"), kwargs.pop("repo_id", REPO_ID)
        try:
            outcomes.append({"result": _run(op, repo_id, kwargs)})
        except Exception as error:  # noqa: BLE001 - every failure is reported to the test, which asserts on it
            response = getattr(error, "response", None)
            outcomes.append({"error": {
                "type": type(error).__name__,
                "bases": [cls.__name__ for cls in type(error).__mro__],
                "status": getattr(response, "status_code", None),
                "message": str(error),
            }})
    print(json.dumps(outcomes))


if __name__ == "__main__":
    main()
