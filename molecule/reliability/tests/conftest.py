"""Fixtures and hooks of the reliability suite: the results table for docs/reliability.md (see lab.py for the
tools the tests use)."""

from __future__ import annotations

import json

import pytest
from reliability_lab import REPORT_DIR  # beside this file; pytest.ini's pythonpath has this folder

# --- the results table ----------------------------------------------------------------------------------------
_RECORDS: dict[str, dict] = {}


@pytest.fixture
def record(request):
    """record(done=..., observed=...) describes the case for docs/reliability.md; the outcome is added after."""
    entry = _RECORDS.setdefault(request.node.nodeid, {
        "group": request.node.module.__doc__.strip().splitlines()[0] if request.node.module.__doc__ else "",
        "case": (request.node.function.__doc__ or request.node.name).strip().splitlines()[0],
        "done": "", "observed": ""})
    if hasattr(request.node, "callspec"):
        entry["case"] = entry["case"].format(**request.node.callspec.params)

    def _record(done: str | None = None, observed: str | None = None, case: str | None = None) -> None:
        for key, value in (("done", done), ("observed", observed), ("case", case)):
            if value is not None:
                entry[key] = value
    return _record


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call" and item.nodeid in _RECORDS:
        _RECORDS[item.nodeid]["outcome"] = report.outcome
        if report.failed:
            _RECORDS[item.nodeid]["observed"] += f" FAILED: {str(report.longrepr).splitlines()[-1][:300]}"
    return report


def pytest_sessionfinish(session):
    if not _RECORDS:
        return
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    results = [{"id": nodeid, **entry} for nodeid, entry in _RECORDS.items()]
    (REPORT_DIR / "results.json").write_text(json.dumps(results, indent=2) + "\n")
