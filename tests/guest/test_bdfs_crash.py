"""kill -9 of bdfs itself in the middle of its multi-step changes.

bdfs runs with BD_FAULT_KILL_AFTER=N, so it SIGKILLs itself right after its
Nth LVM change (pool-backend/core/runner.cc), exactly where a kill -9 could
land. After each kill the export must show the old or the new state, `bdctl
fsck` must leave it clean without changing which, nothing of bd's may be left
in LVM, another volume's data must be untouched, and a new bdfs must mount.
"""
import hashlib
import os
import subprocess
import uuid

import pytest

from bdfs_mount import Mount
from conftest import destroy, make_export
from depth import FULL, kill_points
from devio import read_at as read, write_at as write

MiB = 1 << 20
ZEROS = hashlib.sha256(bytes(4 * MiB)).hexdigest()
MOVE_KILLS = [int(k) for k in
              os.environ.get("BD_MOVE_KILLS", "1,76,151" if FULL else "76").split(",")]


@pytest.fixture
def cbd(tmp_path_factory):
    b = make_export(tmp_path_factory.mktemp("pv"), "k" + uuid.uuid4().hex[:6])
    b.create("/bystander.img", "8M")
    b.keep = b.fill("/bystander.img", 2, "bystander")
    yield b
    destroy(b)


def mount(bd, tmp_path, kill_after=None):
    env = {"BD_FAULT_KILL_AFTER": str(kill_after)} if kill_after else None
    return Mount(bd, tmp_path / ("m" + uuid.uuid4().hex[:4]), env=env)


def meddle(bd):
    """Another change between the kill and fsck: a delete of dst.img goes
    through only if nothing about dst.img is unfinished; else it is refused
    (EUCLEAN, exit 9) and changes nothing. Returns whether it deleted."""
    before = bd.ids()
    pending = bd.json("fsck", bd.name, "--dry-run")["repaired"]
    r = bd.run("delete", bd.spec("/dst.img"), rc=None)
    if "dst.img" not in before:
        assert r.returncode != 0
        return False
    if pending:
        assert r.returncode in (0, 9), r.stderr
    else:
        assert r.returncode == 0, r.stderr
    if r.returncode == 9:
        assert bd.ids() == before
        return False
    # Deleted: no other volume took dst.img's place, now or after fsck.
    assert "dst.img" not in bd.paths()
    return True


def settled(bd):
    """The export after a kill: what it showed, fsck clean and unchanged by fsck."""
    seen = bd.ids()
    fsck = bd.json("fsck", bd.name)
    assert fsck["clean"], fsck
    assert bd.ids() == seen
    assert not [n for n in bd.lvs() if n.startswith("_bd_")], bd.lvs()
    assert bd.checksum("/bystander.img", 2) == bd.keep
    return seen


def kill_run(bd, tmp_path, k, cmd, hold=None):
    """Mounts bdfs set to die after its k-th change, runs cmd in the mount (with
    `hold` open, if given), and returns whether bdfs died."""
    m = mount(bd, tmp_path, k)
    fd = os.open(m.p(hold), os.O_RDWR) if hold else None
    subprocess.run(cmd, shell=True, cwd=m.path, capture_output=True, text=True)
    if fd is not None:
        try:
            os.close(fd)  # the last close: bdfs reaps what it hid
        except OSError:
            pass
    try:
        m.proc.wait(timeout=3)
    except subprocess.TimeoutExpired:
        pass
    died = m.proc.poll() is not None
    m.unmount()
    return died


# (name, setup, command in the mount, changes, file held open, old, new)
REPLACE = ("mv-over", "mv -f src.img dst.img", 4, None)
REPLACE_OPEN = ("mv-over-open", "mv -f src.img dst.img", 5, "dst.img")
UNLINK_OPEN = ("rm-open", "rm dst.img", 2, "dst.img")
CP_ONTO = ("cp-onto", "cp --sparse=never src.img dst.img", 6, None)


@pytest.mark.parametrize("case", [REPLACE, REPLACE_OPEN, UNLINK_OPEN, CP_ONTO],
                         ids=lambda c: c[0])
@pytest.mark.long
def test_kill9_of_bdfs_at_every_step(cbd, tmp_path, case):
    name, cmd, steps, hold = case
    cbd.create("/src.img", "8M")
    src_data = cbd.fill("/src.img", 4, "source")
    cbd.create("/dst.img", "8M")
    dst_data = cbd.fill("/dst.img", 4, "target")
    ids = {p: cbd.info("/" + p)["id"] for p in ("src.img", "dst.img")}
    states = {
        "old": {"bystander.img", "src.img", "dst.img"},
        "new": {"bystander.img", "dst.img"} if name != "rm-open" else {"bystander.img", "src.img"},
    }
    if name == "cp-onto":
        states["new"] = {"bystander.img", "src.img", "dst.img"}
    for k in kill_points(steps, name):   # CI: a fixed sample; --full: every step
        died = kill_run(cbd, tmp_path, k, cmd, hold)
        if k % 2 == 0 and meddle(cbd):
            seen = settled(cbd)
            assert "dst.img" not in seen, (k, seen)
            assert set(seen) | {"dst.img"} in states.values(), (k, seen)
        else:
            seen = settled(cbd)
            assert set(seen) in states.values(), (k, seen)
            if k == steps:   # killed after its last change, or not at all: done
                assert set(seen) == states["new"], (k, seen)
                if name == "cp-onto":
                    assert cbd.checksum("/dst.img", 4) == src_data, k
                elif name != "rm-open":
                    assert seen["dst.img"] == ids["src.img"], k
        if "dst.img" not in seen:
            pass
        elif name == "cp-onto":
            # dst keeps its identity; its data is the old or the copy, never a mix
            assert seen["dst.img"] == ids["dst.img"]
            assert cbd.checksum("/dst.img", 4) in (ZEROS, src_data), k   # emptied by O_TRUNC first
        elif set(seen) == states["new"] and name != "rm-open":
            assert seen["dst.img"] == ids["src.img"], k       # src's volume took the name
            assert cbd.checksum("/dst.img", 4) == src_data
        elif set(seen) == states["old"]:
            assert cbd.checksum("/dst.img", 4) == dst_data, k
        # back to the start for the next kill point
        for p in ("src.img", "dst.img"):
            cbd.run("delete", cbd.spec("/" + p), rc=None)
        cbd.create("/src.img", "8M")
        src_data = cbd.fill("/src.img", 4, "source")
        cbd.create("/dst.img", "8M")
        dst_data = cbd.fill("/dst.img", 4, "target")
        ids = {p: cbd.info("/" + p)["id"] for p in ("src.img", "dst.img")}
        if not died:
            assert k == steps, f"{name}: bdfs finished before change {k}"


@pytest.mark.long
@pytest.mark.timeout(2400)
def test_kill9_of_bdfs_moving_a_directory_of_50_volumes(cbd, tmp_path):
    """The move commits in its first change; every later kill leaves the new
    tree, which fsck finishes. Killed before it, nothing moved."""
    for i in range(50):
        cbd.create(f"/d/v{i:02d}.img", "4M")
    cbd.write("/d/v07.img", b"seven")
    names = {f"v{i:02d}.img" for i in range(50)}
    src, dst = "d", "e"
    # 152 changes: the commit, 3 per volume, dropping the record. Each kill
    # costs a whole move (bdfs's part, then fsck's): about 4 minutes under
    # TCG. CI kills in the middle; tests/run --full (or BD_MOVE_KILLS=1,76,151)
    # adds right after the commit and right before the record goes.
    for k in MOVE_KILLS:
        died = kill_run(cbd, tmp_path, k, f"mv {src} {dst}")
        assert died, k
        seen = settled(cbd)
        moved = {p.split("/", 1)[1] for p in seen if p.startswith(dst + "/")}
        stayed = {p.split("/", 1)[1] for p in seen if p.startswith(src + "/")}
        assert (moved, stayed) == (names, set()), (k, len(moved), len(stayed))
        assert read(cbd.device(f"/{dst}/v07.img"), 5) == b"seven"
        src, dst = dst, src   # and back, from the new state
    m = mount(cbd, tmp_path)
    try:
        assert sorted(os.listdir(m.p(src))) == sorted(names)
    finally:
        m.unmount()
