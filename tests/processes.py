"""Processes a test started, seen through /proc: what a command left running after it was stopped."""

import os


def _stat(pid: int) -> list[str] | None:
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` now (children, their children, ...)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat(int(entry))) is not None:
            parents.setdefault(int(fields[1]), set()).add(int(entry))
    found, todo = set(), [pid]
    while todo:
        below = parents.get(todo.pop(), set()) - found
        found |= below
        todo.extend(below)
    return found


def alive(pids: set[int]) -> set[int]:
    """Those of ``pids`` that still run (zombies do not)."""
    return {pid for pid in pids if (fields := _stat(pid)) is not None and fields[0] != "Z"}
