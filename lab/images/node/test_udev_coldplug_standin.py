"""The udev coldplug stand-in applies a rule's GROUP and MODE only to the devices the rule matches."""

import pathlib

from tests.helpers.loading import load_file

HERE = pathlib.Path(__file__).resolve().parent

RULES = """
# a comment
KERNEL=="kfd", SUBSYSTEM=="kfd", GROUP="render", MODE="0660"
SUBSYSTEM=="drm", KERNEL=="renderD*", GROUP="render", MODE="0660"
SUBSYSTEM=="drm", KERNEL=="card*", GROUP="video", MODE="0660"
SUBSYSTEM=="drm", KERNEL!="card0", MODE="0600"
"""


def _standin():
    return load_file(HERE / "udev-coldplug-standin", "udev_coldplug_standin")  # an executable without .py


def test_kfd_gets_render_group():
    assert _standin().assignments_for("kfd", "kfd", RULES) == {"GROUP": "render", "MODE": "0660"}


def test_later_rules_override_earlier_ones_and_negation_matches():
    standin = _standin()
    assert standin.assignments_for("renderD128", "drm", RULES) == {"GROUP": "render", "MODE": "0600"}
    assert standin.assignments_for("card0", "drm", RULES) == {"GROUP": "video", "MODE": "0660"}


def test_unmatched_device_gets_nothing():
    assert _standin().assignments_for("ttyS0", "tty", RULES) == {}


def test_devices_found_under_dev_root(tmp_path):
    (tmp_path / "dri").mkdir()
    for name in ("kfd", "dri/card0", "dri/renderD128", "dri/by-path"):
        (tmp_path / name).touch()
    found = [(path.name, kernel, subsystem) for path, kernel, subsystem in _standin().simulated_devices(tmp_path)]
    assert found == [("kfd", "kfd", "kfd"), ("card0", "card0", "drm"), ("renderD128", "renderD128", "drm")]
