"""The stand-in's control endpoints on the hub port (/_sim/info, faults, stats, refs), not on the real hub."""

from __future__ import annotations

import json

from .ratelimits import DEFAULT_RATE_LIMIT_WINDOW
from .responses import Answers, HubError


class ControlRoutes(Answers):
    """The /_sim/ routes."""

    def _control(self, method: str, url_path: str, body: bytes) -> None:
        hub = self.hub
        try:
            request = json.loads(body) if body else {}
        except ValueError:
            request = None
        if not isinstance(request, dict):
            raise HubError(400, None, "body must be a JSON object")
        if (method, url_path) == ("GET", "/_sim/info"):
            self._send_json(200, {
                "repo_id": hub.repo.repo_id,
                "size_profile": hub.repo.size_profile,
                "pinned_commit": hub.repo.pinned_commit,
                "branches": dict(hub.repo.branches),
                "commits": [{"sha": c.sha, "title": c.title, "date": c.date} for c in hub.repo.commits.values()],
                "storage": hub.repo.storage,
                "cdn_url": self._base_url(hub.cdn_port),
                "bridge_url": self._base_url(hub.bridge_port),
                "gated": hub.gated,
                "tree_page_size": hub.tree_page_size,
            })
        elif url_path == "/_sim/faults" and method in ("GET", "POST", "DELETE"):
            try:
                if method == "DELETE":
                    hub.faults.replace([])
                    hub.throttle.set(None)
                    hub.rate_limits.set({}, DEFAULT_RATE_LIMIT_WINDOW)
                if "rate_limits" in request or "rate_limit_window" in request:
                    hub.rate_limits.set(request.get("rate_limits") or {},
                                        request.get("rate_limit_window", DEFAULT_RATE_LIMIT_WINDOW))
                if "faults" in request:
                    hub.faults.replace(request["faults"])
                if "throttle_bps" in request:
                    rate = request["throttle_bps"]
                    hub.throttle.set(None if rate is None else int(rate))
            except (ValueError, TypeError) as error:
                raise HubError(400, None, str(error)) from None
            self._send_json(200, {"faults": hub.faults.describe(), "throttle_bps": hub.throttle.rate,
                                  **hub.rate_limits.describe()})
        elif url_path == "/_sim/stats" and method in ("GET", "DELETE"):
            if method == "DELETE":
                hub.stats.reset()
            self._send_json(200, hub.stats.as_json())
        elif (method, url_path) == ("POST", "/_sim/refs"):
            unknown = {sha for sha in request.values() if sha not in hub.repo.commits}
            if unknown:
                raise HubError(400, None, f"unknown commits: {sorted(unknown)}")
            with hub.lock:
                hub.repo.branches.update(request)
            self._send_json(200, {"branches": dict(hub.repo.branches)})
        else:
            raise HubError(404, None, "unknown control endpoint")
