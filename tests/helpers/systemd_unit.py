"""Reading rendered systemd units in tests."""

import shlex


def exec_start_argv(unit: str) -> list[str]:
    """The argv of a unit's ExecStart=, with its backslash-continued lines joined."""
    lines = unit.splitlines()
    start = next(index for index, line in enumerate(lines) if line.startswith("ExecStart="))
    command = []
    for line in lines[start:]:
        command.append(line.removeprefix("ExecStart=").rstrip("\\").strip())
        if not line.endswith("\\"):
            break
    return shlex.split(" ".join(command))
