"""How far the exhaustive guest tests go: CI's fixed sample, or all of it.

Killing bd after each of its LVM changes is exhaustive by nature, and under
TCG each kill point costs a fresh export and a repair (30 s to 4 minutes).
CI runs a fixed, seeded sample of the kill points: for an operation of N
changes, the first and one more picked by BD_KILL_SEED (default 1), so the
same points run every time and a failure reproduces. `tests/run --full`
(BD_FULL=1) runs every point, as do BD_KILL_SEED=all and a count of two
or less.
"""
import os
import random

FULL = os.environ.get("BD_FULL") == "1"
SEED = os.environ.get("BD_KILL_SEED", "1")


def kill_points(steps, key):
    """The 1-based kill points to run for an operation of `steps` changes.
    `key` names the operation, so each picks its own point for one seed."""
    if FULL or SEED == "all" or steps <= 2:
        return list(range(1, steps + 1))
    rng = random.Random(f"{SEED}:{key}")
    return sorted({1, rng.randint(2, steps)})


def sized(variable, ci, full):
    """An integer knob: $variable if set, else `full` under BD_FULL=1, else `ci`."""
    value = os.environ.get(variable)
    return int(value) if value else (full if FULL else ci)
