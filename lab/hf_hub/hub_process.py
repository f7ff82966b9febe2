"""The hub stand-in as a test subprocess, with helpers for its /_sim/ control endpoints."""

from pathlib import Path

import requests

from lab.standin_process import StandinProcess

SERVER = Path(__file__).resolve().parent / "server.py"


class HubProcess(StandinProcess):
    """server.py started with `args`; `info` is its /_sim/info answer (commits, files)."""

    def __init__(self, args: list[str], log_path: Path) -> None:
        super().__init__(SERVER, args, log_path)
        self.info = self.control("GET", "info")

    def control(self, method: str, name: str, body: dict | None = None) -> dict:
        response = requests.request(method, f"{self.url}/_sim/{name}", json=body, timeout=10)
        response.raise_for_status()
        return response.json()

    @property
    def content_path(self) -> str:
        """Glob of the URL paths that serve LFS files' bytes: the CDN's, or the Xet bridge's."""
        return "/xet-bridge-us/*" if self.info["storage"] == "xet" else "/repos/*"

    def faults(self, *faults: dict, throttle_bps: int | None = None) -> None:
        self.control("POST", "faults", {"faults": list(faults), "throttle_bps": throttle_bps})

    def stats(self) -> dict:
        return self.control("GET", "stats")

    def file_stats(self, path: str) -> dict:
        return self.stats()["files"].get(path, {})

    def reset(self) -> None:
        self.control("DELETE", "faults")
        self.control("DELETE", "stats")
