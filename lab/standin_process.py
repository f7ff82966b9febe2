"""A stand-in server run as a subprocess on a free loopback port, for tests.

The stand-ins print `READY <url>` on stdout once they listen (`--port 0` picks a free port).
"""

import os
import select
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


class StandinProcess:
    """Starts `script` with `args`, waits for its READY line, and stops it with SIGTERM. `script` is a file, or
    the dotted name of a module, run with `python -m` from the repository root so that it imports the project's
    packages as the tests do (`lab....`). `core` pins it to one CPU (benchmarks keep a server off the
    measured client's core)."""

    def __init__(self, script: Path | str, args: list[str], log_path: Path, start_timeout: float = 20,
                 core: int | None = None) -> None:
        self.log_path = log_path
        self._log = log_path.open("w")
        run, cwd = ([str(script)], None) if isinstance(script, Path) else (["-m", script], REPO)
        self.process = subprocess.Popen(
            [sys.executable, *run, "--host", "127.0.0.1", "--port", "0", *args], cwd=cwd,
            stdout=subprocess.PIPE, stderr=self._log, text=True,
            preexec_fn=None if core is None else lambda: os.sched_setaffinity(0, {core}))
        ready, _, _ = select.select([self.process.stdout], [], [], start_timeout)
        line = self.process.stdout.readline() if ready else ""
        if not line.startswith("READY "):
            self.stop()
            raise RuntimeError(f"{Path(script).name} did not start: {line!r}, see {log_path}")
        self.url = line.split()[1]

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self._log.close()
