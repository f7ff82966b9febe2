"""scripts/reliability_report.py rewrites docs/reliability.md's tables from the scenario's results and keeps what
is written by hand from its KEPT line on (the measurements of benchmarks/balancer_failover.py)."""

import json
import pathlib
import subprocess
import sys

from scripts.reliability_report import KEPT

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "scripts" / "reliability_report.py"
RESULT = {"group": "Faults: the node keeps serving", "case": "a new case", "done": "something",
          "observed": "it | held", "outcome": "passed"}


def _report(tmp_path, document: str) -> str:
    results, output = tmp_path / "results.json", tmp_path / "reliability.md"
    results.write_text(json.dumps([RESULT]))
    output.write_text(document)
    run = subprocess.run([sys.executable, str(SCRIPT), "--results", str(results), "--output", str(output)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    return output.read_text()


def test_tables_are_rewritten_and_the_hand_written_part_is_kept(tmp_path):
    hand_written = f"{KEPT}\n\n## Balancer failover\n\n| fault | back after |\n|---|---|\n| x | 1.5 s |\n"
    report = _report(tmp_path, "# old title\n\n## Faults\n\n| an old case |\n\n" + hand_written)
    assert "an old case" not in report and "old title" not in report
    assert "| a new case | something | it \\| held | pass |" in report
    assert report.endswith("\n\n" + hand_written)


def test_without_the_kept_line_only_the_tables_are_written(tmp_path):
    report = _report(tmp_path, "# old\n\nnotes without the line\n")
    assert "notes without the line" not in report and "| a new case |" in report
    assert KEPT not in report
