"""kill -9 of bdctl at every LVM step of each multi-step operation (CI: a
fixed sample of the steps; tests/run --full: all of them).

BD_FAULT_KILL_AFTER=N makes bdctl SIGKILL itself right after its Nth LVM change
(pool-backend/core/runner.cc): the same as `kill -9` landing at that point, but
deterministic. After each kill the export must show the old or the new state,
`bdctl fsck` must leave it clean, the operation must then succeed, and other
volumes' data must be untouched.
"""
import signal
import subprocess
import time

import pytest

from conftest import BDCTL
from depth import kill_points


def prepare(bd):
    bd.create("/bystander.img", "16M")
    keep = bd.fill("/bystander.img", 4, "bystander")
    bd.create("/dir/x.img", "4M")
    bd.create("/dir/sub/y.img", "4M")
    bd.create("/a.img", "32M")
    a = bd.fill("/a.img", 8, "a-data")
    bd.run("snapshot", bd.spec("/a.img"), "s1")
    a_new = bd.fill("/a.img", 8, "a-newer")
    return keep, a, a_new


BASE = {"a.img", "a.img@s1", "bystander.img", "dir/x.img", "dir/sub/y.img"}

OPS = {
    # op: (argv after "bdctl", changes it makes (LVM and qemu-img), old paths, new paths)
    "create": (["create", "{e}:/new.img", "8M"], 1, BASE, BASE | {"new.img"}),
    "create-qcow2": (["create", "--format", "qcow2", "{e}:/new.qcow2", "8M"], 3,
                     BASE, BASE | {"new.qcow2"}),
    "clone": (["clone", "{e}:/a.img", "/c.img"], 1, BASE, BASE | {"c.img"}),
    "clone-full": (["clone", "--full", "{e}:/a.img", "/c.img"], 5, BASE, BASE | {"c.img"}),
    "snapshot": (["snapshot", "{e}:/a.img", "s2"], 1, BASE, BASE | {"a.img@s2"}),
    "rollback": (["rollback", "{e}:/a.img", "s1"], 4, None, None),
    "rename": (["rename", "{e}:/a.img", "/d/b.img"], 3,
               BASE, BASE - {"a.img"} | {"d/b.img"}),
    "rename-dir": (["rename", "{e}:/dir", "/moved"], 8,
                   BASE, BASE - {"dir/x.img", "dir/sub/y.img"} | {"moved/x.img", "moved/sub/y.img"}),
    "delete": (["delete", "{e}:/a.img", "--with-snapshots"], 3,
               BASE, BASE - {"a.img", "a.img@s1"}),
}

# Every kill point with tests/run --full; CI runs a fixed sample (tests/lib/depth.py).
# Rollback commits at its second change (the old LV removed): always killed there.
COMMITS = {"rollback": (2,)}
CASES = [(op, k) for op, (_, steps, _, _) in OPS.items()
         for k in kill_points(steps, op, COMMITS.get(op, ()))]


@pytest.mark.parametrize("op,kill_after", CASES, ids=[f"{o}-after-step{k}" for o, k in CASES])
def test_kill9_then_fsck(bd, op, kill_after):
    keep, a_old, a_new = prepare(bd)
    argv, steps, old, new = OPS[op]
    argv = [x.format(e=bd.name) for x in argv]
    r = bd.run(*argv, rc=None, env={"BD_FAULT_KILL_AFTER": str(kill_after)})
    killed = r.returncode == -signal.SIGKILL
    assert killed or kill_after == steps, (r.returncode, r.stderr)
    # Old or new state, never a mix, before any repair.
    seen = set(bd.paths())
    if old is not None:
        assert seen in (old, new), seen
    else:
        assert seen == BASE
    if op == "rollback":
        # The commit point is step 2 (the old LV removed).
        assert bd.checksum("/a.img", 8) == (a_new if kill_after < 2 else a_old)
    # Whatever links the kill left stale, the next change to the export (on
    # another path, before any fsck) puts the whole tree right.
    bd.run("create", bd.spec("/probe.img"), "4M")
    bd.assert_tree_true()
    bd.run("delete", bd.spec("/probe.img"))
    fsck = bd.json("fsck", bd.name)
    assert fsck["clean"], fsck
    assert set(bd.paths()) == seen  # fsck finishes or undoes; it never changes the outcome
    bd.assert_tree_true()           # the links a kill left stale are put right too
    assert not any(n.startswith("_bd_") for n in bd.lvs())
    assert bd.checksum("/bystander.img", 4) == keep
    if op == "rollback":
        # Whatever state we are in, rolling back (again) must work and restore s1.
        bd.run(*argv)
        assert bd.checksum("/a.img", 8) == a_old
    elif seen == old:
        bd.run(*argv)  # the interrupted operation can simply be retried
        assert set(bd.paths()) == new
    bd.assert_tree_true()


def test_unfinished_work_is_reported_and_blocks_the_same_volume(bd):
    prepare(bd)
    # Killed after its first step: a hidden copy of s1 claims a.img.
    bd.run("rollback", bd.spec("/a.img"), "s1", rc=None, env={"BD_FAULT_KILL_AFTER": "1"})
    r = bd.run("create", bd.spec("/other.img"), "4M")
    assert "unfinished work" in r.stderr and "bdctl fsck" in r.stderr
    r = bd.run("rename", bd.spec("/a.img"), "/z.img", rc=9)
    assert "run `bdctl fsck" in r.stderr
    assert bd.json("export", "info", bd.name)["leftovers"] >= 1
    bd.run("fsck", bd.name)
    bd.run("rename", bd.spec("/a.img"), "/z.img")


def test_external_kill9_during_full_clone(bd):
    bd.create("/bystander.img", "16M")
    keep = bd.fill("/bystander.img", 4, "bystander")
    bd.create("/big.img", "256M")
    bd.fill("/big.img", 128, "big")
    p = subprocess.Popen([BDCTL, "clone", "--full", bd.spec("/big.img"), "/copy.img"],
                         stderr=subprocess.PIPE, text=True)
    # Wait until the copy is under way, then kill -9 it from outside.
    line = p.stderr.readline()
    deadline = time.time() + 60
    while "copying" not in line and time.time() < deadline:
        line = p.stderr.readline()
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert p.returncode == -signal.SIGKILL
    assert "copy.img" not in bd.paths()
    assert any(n.startswith("_bd_tmp.") for n in bd.lvs())
    fsck = bd.json("fsck", bd.name)
    assert fsck["clean"] and any("removed" in r["action"] for r in fsck["repaired"])
    assert not any(n.startswith("_bd_") for n in bd.lvs())
    assert bd.checksum("/bystander.img", 4) == keep
