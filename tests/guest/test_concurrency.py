"""Two bdctl processes racing on the same names: the export lock serializes them."""
import hashlib
import subprocess

from conftest import BDCTL


def bd_sha(data):
    return hashlib.sha256(data).hexdigest()


def race(*argvs):
    procs = [subprocess.Popen([BDCTL, *a], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for a in argvs]
    return [(p.wait(), p.stderr.read()) for p in procs]


def test_racing_creates_of_one_name(bd):
    for round_ in range(3):
        results = race(*[["create", bd.spec(f"/r{round_}.img"), "8M"]] * 2)
        codes = sorted(rc for rc, _ in results)
        assert codes == [0, 4], results
        assert any("already exists" in err for _, err in results)
    assert bd.paths() == ["r0.img", "r1.img", "r2.img"]


def test_racing_clones_to_one_name(bd):
    bd.create("/src.img", "8M")
    digest = bd.fill("/src.img", 4, "race")
    results = race(["clone", bd.spec("/src.img"), "/dst.img"],
                   ["clone", bd.spec("/src.img"), "/dst.img"],
                   ["clone", "--full", bd.spec("/src.img"), "/dst.img"])
    winners = [i for i, (rc, _) in enumerate(results) if rc == 0]
    assert len(winners) == 1, results
    for i, (rc, err) in enumerate(results):
        if i == winners[0]:
            continue
        # A full copy reserves its target before it copies without the lock:
        # a clone meanwhile is told the copy is in progress (exit 5), else
        # that the target exists (exit 4).
        busy = winners == [2] and rc == 5 and "operation in progress" in err
        assert busy or (rc == 4 and "already exists" in err), results
    assert bd.checksum("/dst.img", 4) == digest
    assert not any(n.startswith("_bd_") for n in bd.lvs())


def test_racing_create_and_rename_onto_it(bd):
    a_id = bd.create("/a.img", "8M")["id"]
    bd.write("/a.img", b"a's data")
    results = race(["create", bd.spec("/b.img"), "8M"], ["rename", bd.spec("/a.img"), "/b.img"])
    (create_rc, _), (rename_rc, _) = results
    assert sorted([create_rc, rename_rc]) == [0, 4], results
    b = bd.info("/b.img")
    if rename_rc == 0:   # the rename won: a's volume and data are at b, a is gone
        assert b["id"] == a_id and bd.paths() == ["b.img"]
        assert bd.checksum_at("/b.img", 0, 8) == bd_sha(b"a's data")
    else:                # the create won: a new, empty b; a untouched
        assert b["id"] != a_id and bd.paths() == ["a.img", "b.img"]
        assert bd.info("/a.img")["id"] == a_id and b["allocated"] == 0
