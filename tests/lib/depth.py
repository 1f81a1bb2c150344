"""How far the exhaustive guest tests go: CI's fixed sample, or all of it.

Killing bd after each of its LVM changes is exhaustive by nature, and under
TCG each kill point costs a fresh export and a repair (30 s to 4 minutes).
CI runs a fixed sample of the kill points: for an operation of N changes,
the first and the last, one even one in between picked by BD_KILL_SEED
(default 1; some tests meddle only after an even step), and any the test
names (a commit point). The same points run every time, so a failure
reproduces. `tests/run --full` (BD_FULL=1) runs every point, as does
BD_KILL_SEED=all.
"""
import os
import random

FULL = os.environ.get("BD_FULL") == "1"
SEED = os.environ.get("BD_KILL_SEED", "1")


def kill_points(steps, key, always=()):
    """The 1-based kill points to run for an operation of `steps` changes.
    `key` names the operation, so each picks its own point for one seed;
    `always` are points the test needs whatever the seed."""
    if FULL or SEED == "all":
        return list(range(1, steps + 1))
    points = {1, steps, *always}
    middle = [k for k in range(2, steps) if k % 2 == 0]
    if middle:
        points.add(random.Random(f"{SEED}:{key}").choice(middle))
    return sorted(points)


def sized(variable, ci, full):
    """An integer knob: $variable if set, else `full` under BD_FULL=1, else `ci`."""
    value = os.environ.get(variable)
    return int(value) if value else (full if FULL else ci)
